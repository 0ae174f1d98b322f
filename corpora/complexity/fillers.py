# ruff: noqa: E501  (data: one prompt per line)
"""Hand-written fillers for the request shapes a gateway sees over and over (translate this, make this polite,
is this review positive, extract this field, what is N% of M), each with several phrasings so that no two records
read alike. Written for this repository."""

from __future__ import annotations

import random

PHRASES = [
    "Good morning, how are you?",
    "Where is the train station?",
    "The meeting starts at ten.",
    "Thank you for your order.",
    "Please close the door.",
    "I would like a coffee with milk.",
    "Your package will arrive tomorrow.",
    "We are closed on Sundays.",
    "Can you help me?",
    "The invoice is attached.",
    "I'm running five minutes late.",
    "Happy birthday!",
    "How much does this cost?",
    "The password must have at least eight characters.",
    "Welcome to the team!",
    "See you next week.",
    "The office is on the second floor.",
    "Please reply by Friday.",
    "My name is Daniel.",
    "Have a nice weekend.",
    "The printer is out of paper.",
    "Do you accept credit cards?",
    "I don't understand.",
    "Your appointment is confirmed.",
    "Click here to reset your password.",
    "The store opens at nine.",
    "Out of office until Monday.",
    "Please keep your receipt.",
    "Lunch is ready.",
    "Where can I park?",
    "Your subscription has been renewed.",
    "Sorry for the delay.",
    "The file is too large.",
    "Press the green button to start.",
    "Is breakfast included?",
]
LANGS = ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Polish", "Japanese", "Chinese", "Turkish"]
TRANSLATE_SIMPLE = [
    "Translate to {lang}: {s}",
    'How do you say "{s}" in {lang}?',
    "{s}\n\n-> {lang} please",
    "Can you put this in {lang}? {s}",
    'What\'s "{s}" in {lang}?',
    "translate into {lang_lower}: {s}",
]
TRANSLATE_COMPLEX = [
    "Translate this clause into German, keeping its legal effect exactly, and flag any term without a direct "
    'equivalent: "The Licensee shall indemnify and hold harmless the Licensor against all claims arising from the '
    "Licensee's negligent use of the Software, save where such claims result from the Licensor's wilful default.\"",
    'Translate our slogan "Bank on us, not on luck" into Japanese so that it keeps both the pun and the reassuring '
    "tone, give three options and explain the trade-offs.",
    "Translate this paragraph into Brazilian Portuguese for a marketing site, adapting idioms rather than translating "
    'them literally: "Our new plan is a no-brainer. It hits the ground running, costs peanuts, and our support team '
    "has your back 24/7. Don't take our word for it: take it for a spin.\"",
    "Translate this medical discharge note into Spanish for the patient, in plain language, without losing any "
    'dosing instruction: "Continue metoprolol 25 mg PO BID. Hold if HR < 55 or SBP < 95. Follow up with cardiology '
    'in 2/52. Return to ED if chest pain, SOB or syncope."',
    "Translate the following Finnish sentence into English and explain the grammar of each case ending: "
    '"Talossamme ei ole koskaan ollut näin paljon vieraita."',
    "Translate this German contract term into English and explain how its meaning differs from the closest English "
    'legal concept: "Die Gewährleistung richtet sich nach den gesetzlichen Vorschriften, soweit nicht anders vereinbart."',
    "We localise our app into Arabic. Translate these five UI strings and explain what changes for right-to-left "
    'layout and plural forms: "You have {n} new messages", "Delete 1 file?", "Last seen {time} ago", "Settings", '
    '"Undo".',
    "Translate this poem's first stanza into French, keeping the rhyme scheme and metre as far as possible, and say "
    'what you had to sacrifice: "The river keeps no record of the rain, / it only knows the weight of being full; / '
    'and every stone it carried to the plain / was set down gently, as if by a rule."',
    "Translate this Korean customer complaint into English, preserve its level of politeness and tell me what tone "
    'our reply should take: "바쁘신 와중에 죄송하지만, 지난주에 주문한 상품이 아직 도착하지 않아 문의드립니다. 벌써 세 번째 문의입니다."',
    "Translate this technical paragraph into simplified Chinese for an engineering audience, keeping the terms "
    'consistent with common usage in Chinese developer communities: "The consumer group rebalances whenever a member '
    'joins or leaves; static membership avoids rebalances during rolling restarts, at the cost of a session timeout."',
    "Translate this idiom-heavy English email into Italian so that an Italian manager reads it as equally informal "
    "and friendly: \"Hey Marco, quick heads-up: the launch is a bit of a moving target, so let's touch base Monday "
    "and hash it out. No biggie if you can't make it.\"",
    "Back-translate this Spanish survey question into English and tell me whether it's leading or ambiguous for a "
    'customer satisfaction study: "¿No cree usted que nuestro servicio ha mejorado mucho este año?"',
    "Translate this Hindi paragraph into English and explain the cultural references: "
    '"दीवाली पर हमने पूरे दफ्तर को दीयों से सजाया, और सबने मिलकर मिठाइयाँ बाँटीं। इस साल बोनस भी समय पर आया, तो खुशी दोगुनी हो गई।"',
    "Translate this Swahili notice into English and French, keeping the official register: "
    '"Wateja wote wanaombwa kufika na vitambulisho vyao. Huduma zitaanza saa tatu asubuhi."',
]

BLUNT = [
    "Send me the numbers now.",
    "Your report is late again.",
    "We can't do that.",
    "Stop emailing me about this.",
    "The meeting was a waste of time.",
    "You forgot to attach the file.",
    "This is not what I asked for.",
    "Fix this by tomorrow.",
    "No, we won't refund you.",
    "Why is this still broken?",
    "Call me back.",
    "I need the contract signed today.",
    "Your code broke the build.",
    "Read the documentation first.",
    "The price is going up next month.",
    "We don't support that browser.",
    "Your application was rejected.",
    "Move the meeting to 3pm.",
    "i cant find the files u sent",
    "pls update the slides",
    "the wifi is down again",
    "we're out of coffee",
    "Don't park in the loading bay.",
    "Your trial has ended.",
    "Submit your timesheet.",
]
REWRITE_TASKS = [
    "Make this more polite: {s}",
    "Rewrite this so it sounds professional: {s}",
    "Fix the grammar and spelling: {s}",
    "Make this friendlier: {s}",
    'Reword for a customer email: "{s}"',
    "Soften the tone of this message: {s}",
    "Rewrite in a formal register: {s}",
]

REVIEWS = [
    "Arrived quickly and works perfectly.",
    "Broke after two days. Waste of money.",
    "It's okay, nothing special.",
    "The staff were rude and the room was dirty.",
    "Best pizza in town, hands down!",
    "Did exactly what it says on the box.",
    "Too expensive for what you get.",
    "I'd buy it again.",
    "The app crashes every time I open it.",
    "Customer service sorted my issue in five minutes, great!",
    "Meh. It's fine.",
    "Battery life is terrible.",
    "Lovely view, comfy bed, will come back.",
    "Shipping took a month.",
    "Not bad, but the manual is confusing.",
    "Exceeded my expectations!",
    "The fabric feels cheap.",
    "Five stars, would recommend to anyone.",
    "The update removed the feature I used most.",
    "Decent value for the price.",
    "Never again.",
    "The checkout was smooth and easy.",
    "Sound quality is amazing for this price.",
    "It stopped charging after a week.",
    "Pretty good overall, a few bugs.",
]
CLASSIFY_TASKS = [
    'Is this review positive or negative? "{s}"',
    'Sentiment of: "{s}" (positive, neutral, negative)',
    "Classify the sentiment. Reply with one word.\nReview: {s}",
    'Rate this review from 1 to 5 stars based on its tone: "{s}"',
    'Label: POS or NEG\n"{s}"',
]

PEOPLE = [
    ("Ana", "Pérez", "Madrid"),
    ("Tom", "Becker", "Hamburg"),
    ("Li", "Wei", "Shanghai"),
    ("Fatima", "Okafor", "Lagos"),
    ("Jonas", "Lindqvist", "Malmö"),
    ("Priya", "Raman", "Chennai"),
    ("Lucas", "Martin", "Lyon"),
    ("Sofia", "Rossi", "Turin"),
    ("Kenji", "Sato", "Osaka"),
    ("Emily", "Clarke", "Leeds"),
    ("Mateus", "Silva", "Porto Alegre"),
    ("Noor", "Haddad", "Amman"),
    ("Olga", "Ivanova", "Tallinn"),
    ("Diego", "Fernández", "Rosario"),
    ("Hannah", "Weiss", "Graz"),
]
EXTRACT_TEXTS = [
    "Hi, this is {first} {last} from {city}. My email is {email} and my order number is {order}.",
    "Please deliver to {first} {last}, {city}. Contact: {email}.",
    "{first} {last} ({email}) wants to reschedule the demo to {day}.",
    "New lead: {first} {last}, based in {city}, asked about pricing for {seats} seats.",
    "Ticket from {email}: invoice {order} shows the wrong amount. Customer: {first} {last}.",
]
EXTRACT_TASKS = [
    "Extract the name and email as JSON:\n{t}",
    "Return a JSON object with first_name, last_name and city from this text: {t}",
    "From the message below, pull out the email address.\n\n{t}",
    "Give me the fields name, email, order_id as JSON (null if missing): {t}",
    "Parse this into JSON: {t}",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

MATH_SIMPLE = [
    "What is {p}% of {n}?",
    "What's {a} + {b}?",
    "Calculate {a} x {c}.",
    "Convert {n} km to miles.",
    "How many hours is {m} minutes?",
    "If something costs ${n} and it's {p}% off, what do I pay?",
    "What is {a} minus {b}?",
    "Round {f} to one decimal place.",
    "Divide {n} by {c}.",
]
MATH_COMPLEX = [
    "An investment of ${n}000 earns {p}% a year compounded monthly, and I add ${a} every month. How much will I have "
    "after {c} years, and how much of it is interest? Show the formula and the steps.",
    "A factory produces {n} units a day with a {p}% defect rate. Units are sampled in batches of {c}. What's the "
    "probability a batch has at least two defects, and how many batches a day would you expect to fail?",
    "A project has tasks A ({a} days), B ({c} days, after A), C ({b} days, after A) and D ({c} days, after B and C). "
    "What's the critical path and total duration, and how much slack does each task have? If B slips by {p} days, "
    "what changes?",
    "A server handles {n} requests per second with a mean service time of {c} ms on {a} cores. Using an M/M/c model, "
    "estimate utilisation and the mean waiting time, and say when the model breaks down.",
    "I have {a} red and {b} blue socks in a drawer. I pick {c} at random without looking. What's the probability of "
    "getting at least one matching pair of each colour? Explain the counting.",
    "Our SaaS has {n} customers, monthly churn {p}%, and adds {a} customers a month. What's the steady-state number "
    "of customers, and how long until we're within 5% of it? Derive it.",
]


def _email(first: str, last: str, rng: random.Random) -> str:
    dom = rng.choice(["example.com", "mail.example.org", "corp.example", "example.net"])
    return f"{first.lower()}.{last.lower()}@{dom}".replace("é", "e").replace("á", "a").replace("ö", "o")


def translation(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    out = []
    for s in PHRASES:
        lang = rng.choice(LANGS)
        t = rng.choice(TRANSLATE_SIMPLE)
        out.append(("simple", t.format(s=s, lang=lang, lang_lower=lang.lower()), []))
    out += [("complex", t, []) for t in TRANSLATE_COMPLEX]
    return out


def rewriting(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    return [("simple", rng.choice(REWRITE_TASKS).format(s=s), []) for s in BLUNT]


def classification(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    return [("simple", rng.choice(CLASSIFY_TASKS).format(s=s), []) for s in REVIEWS]


def extraction(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    out = []
    for first, last, city in PEOPLE:
        for _ in range(2):
            text = rng.choice(EXTRACT_TEXTS).format(
                first=first,
                last=last,
                city=city,
                email=_email(first, last, rng),
                order=f"{rng.choice(['A', 'INV-', 'ORD'])}{rng.randint(10000, 99999)}",
                day=rng.choice(DAYS),
                seats=rng.choice([5, 12, 40, 250]),
            )
            out.append(("simple", rng.choice(EXTRACT_TASKS).format(t=text), []))
    return out


def maths(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    out = []
    for t in MATH_SIMPLE * 3:
        out.append(
            (
                "simple",
                t.format(
                    p=rng.choice([5, 10, 12, 15, 20, 25, 30, 40]),
                    n=rng.choice([20, 45, 80, 120, 250, 600, 1500]),
                    a=rng.randint(11, 999),
                    b=rng.randint(2, 99),
                    c=rng.randint(2, 12),
                    m=rng.choice([90, 150, 240, 45]),
                    f=round(rng.uniform(1, 100), 3),
                ),
                [],
            )
        )
    for t in MATH_COMPLEX * 2:
        out.append(
            (
                "complex",
                t.format(
                    p=rng.choice([2, 3, 4, 5, 6, 7]),
                    n=rng.choice([20, 50, 120, 400]),
                    a=rng.randint(3, 40),
                    b=rng.randint(3, 12),
                    c=rng.randint(3, 15),
                ),
                [],
            )
        )
    return out
