# ruff: noqa: E501  (data: one prompt per line)
"""Hand-written standalone prompts, one per line: `LABEL|TAGS|TEXT`.

LABEL is S (simple: a ~135M-1B instruct model answers it well) or C (complex: it needs a stronger model).
TAGS is a comma-separated list of hard-case tags (may be empty). `\\n` in TEXT is a newline.
Written for this repository; not copied from any public dataset.
"""

from __future__ import annotations

SUPPORT = r"""
S||How do I reset my password?
S||I forgot my username, how can I get it back?
S||Where can I download last month's invoice?
S||Can I change the email address on my account?
S||My order hasn't arrived yet. What should I do?
S||What are your opening hours on Saturday?
S||How do I cancel my subscription?
S||Is there a way to turn off the marketing emails?
S||Do you ship to Canada?
S||How long does a refund usually take to show up on my card?
S||The app keeps logging me out, any quick fix?
S||Can I pay with PayPal?
S||where do i find my tracking number
S||How do I update my billing address?
S||I was charged twice for the same order, who do I contact?
S||What's the difference between the Basic and Pro plan? Just the short version please.
S||Can I add a second user to my account?
S||How do I enable two-factor authentication?
S||My coupon code says it's expired, can you check?
S||Do you offer a student discount?
S||hi, my package says delivered but it's not here
S||How can I return a damaged item?
S||Is my data stored in the EU?
S||What's your phone number for support?
S||Can I get a receipt with my company's VAT number on it?
S||How do I export my contacts to CSV?
S||The checkout button does nothing when I click it. What can I try?
S||Please close my ticket, the issue is solved. Thanks!
S||Can you resend the confirmation email for order 88412?
S||I want to downgrade to the free plan at the end of this month.
S||How do I change my delivery address after ordering?
S||Is there a mobile app for Android?
S||Why was my card declined?
S||How many devices can I use with one licence?
S|trigger_word|Can you explain step by step how to change my profile picture?
S|trigger_word|Please analyze my request: I just want to know when my trial ends.
S|trigger_word|Compare the monthly and yearly price for me, which is cheaper per month?
S||Write a short, friendly reply to a customer thanking them for their patience while we fix a shipping delay.
S||Draft a two-line apology to a customer whose order arrived late.
S||Reply to this customer: "Do you have the blue jacket in size M?" We do, it's in stock.
C||A customer on the annual Pro plan downgraded to Basic on day 140 of 365, used a 20% loyalty coupon at renewal, and was then charged the full Basic price for the remaining period. Work out what they should have paid, how much to refund, and write the explanation we send them.
C||We changed our refund policy twice this year (January: 30 days, any reason; June: 14 days, unopened only). A customer bought in May, opened the item in June and asks for a refund in July citing the old policy. Lay out the arguments on both sides, what consumer law in the EU typically requires, and recommend what support should do.
C||Our support backlog went from 400 to 2,300 tickets in three weeks after the 5.0 release. Ticket tags show login (35%), billing (25%), sync errors (30%), other (10%). Propose a triage plan, staffing changes and which engineering fixes would cut volume most, with rough numbers.
C||Design an escalation matrix for our customer support team: four severity levels, response and resolution targets per plan tier, on-call rules for weekends, and what triggers an automatic escalation to engineering.
C||A customer claims our API returned HTTP 200 with an empty body during an outage, that their system treated it as success and shipped 1,200 orders without payment. Draft a response that is empathetic, does not admit liability, explains what we know, and lists the information we need from them.
C|short_hard|Why would a refund succeed in Stripe but never reach the customer's bank?
"""

HR = r"""
S||How many vacation days do I have left?
S||When is the next public holiday?
S||Who do I ask about my payslip?
S||How do I request a day off?
S||Can I work from home on Fridays?
S||What's the dress code at the office?
S||Where do I submit my expense receipts?
S||Is the office open between Christmas and New Year?
S||How do I update my emergency contact?
S||What time does the cafeteria close?
S||Do we get paid on the 25th or the last day of the month?
S||How do I book a meeting room?
S||Who is my HR business partner?
S||Can I bring my dog to the office?
S||How do I enroll in the pension plan?
S||What's the policy on sick days? Short answer please.
S||Is parental leave paid?
S||How do I report that I'm sick today?
S||Where can I find the employee handbook?
S||Can I carry over unused vacation days to next year?
S||hi there
S||thanks, that's all
S||Write a short out-of-office message for my vacation from 3 to 14 August.
S||Draft a polite email to my manager asking for Friday off.
S||Write a two-sentence welcome message for a new hire named Priya joining the data team.
S|trigger_word|Explain step by step how to submit a leave request in the portal.
S|trigger_word|Evaluate whether I need my manager's approval for a half day off. Yes or no is fine.
C||I'm a part-time employee (60%) who moved from the US office to the Berlin office on 1 July. I had 9 US PTO days left and used 4 days of German leave already. Under a pro-rated 28-day German entitlement and a policy that carries over at most 5 days, how many days do I have this year and how many carry over? Show the calculation.
C||Draft a fair performance improvement plan for a senior engineer whose code quality is good but who repeatedly misses deadlines and skips stand-ups. Include measurable goals, support offered, a 60-day timeline and what happens at the end.
C||Our company has 180 employees in 4 countries (US, UK, Germany, India). Compare how statutory parental leave differs between them and propose a single global policy that meets the legal minimum everywhere and is fair across locations.
C||Two employees report each other for harassment with conflicting accounts and no witnesses. Outline an investigation process that is fair to both, protects confidentiality, and documents decisions in a way that would hold up if challenged.
C||We want to move from annual reviews to quarterly check-ins. Analyse the trade-offs for managers, employees and HR workload, and propose a rollout plan with metrics to judge whether it worked.
C|short_hard|Is a non-compete enforceable for a remote employee in California working for a Texas company?
C|short_hard|How should equity refreshers be sized to reduce attrition without diluting early employees?
"""

SUMMARISE = r"""
S||Summarise in one sentence: The team met on Tuesday, agreed to move the launch to next week, and Sara will update the website.
S||Give me a one-line summary: "Our office will be closed on Monday for maintenance. Please work from home. The VPN will be available as usual."
S||TL;DR please: The printer on floor 3 is broken again. IT has been called and a technician is coming tomorrow morning. Use the one on floor 2 meanwhile.
S||Summarise this review in five words: "Great coffee, friendly staff, but the seats are uncomfortable and it's always crowded after 9am."
S||Shorten this to one sentence: "We are pleased to inform you that your application has been received and is currently being reviewed by our team. We will contact you within ten working days."
S||In one sentence, what is this about? "Reminder: timesheets for March are due by Friday at 5pm. Late submissions delay payroll."
S||Summarise: "Customer called about a broken zipper on a backpack bought two weeks ago. Offered a replacement; customer accepted. Shipping label sent."
C||Summarise the main arguments for and against a four-day work week, as they appear in economic research, including evidence on productivity, and note where the evidence is weak.
C||Summarise the causes of the 2008 financial crisis for a board that has no finance background, in under 300 words, without oversimplifying the role of credit default swaps.
C||I'll paste our last six quarterly reports in the next message. For now: what structure would you use to summarise trends across them so that changes in accounting policy don't get mistaken for performance changes?
"""

EXTRACTION = r"""
S||Extract the name and email as JSON: "Hi, I'm Ana Pérez, you can reach me at ana.perez@example.com."
S||Get the date from this sentence in YYYY-MM-DD format: "The meeting is on March 3rd, 2025."
S||Return JSON with keys city and country: "I live in Lyon, France."
S||From "Order #55123 shipped on 4 May via DHL", extract the order number and carrier as JSON.
S||Pull the phone number out of this: "Call me on +44 20 7946 0958 after 6pm."
S||Extract all email addresses: "cc: tom@acme.io, jane.doe@acme.io; bcc: ops@acme.io"
S||What is the price in this text, as a number? "The total comes to $1,249.99 including tax."
S||Extract product name and quantity as JSON: "Please send 3 boxes of A4 paper."
S||Turn this into JSON with fields first_name, last_name, age: "John Smith, 42"
S||List the hashtags in this tweet: "Loving the new release! #python #release #opensource"
S||Extract the company names: "Yesterday Globex signed a deal with Initech and Umbrella Corp."
S||Give me the start and end time as JSON: "Standup moved to 9:15-9:30 tomorrow."
C||Extract every line item from the invoice text below into JSON (sku, description, quantity, unit_price, discount, line_total), normalise the currencies to EUR using the rates given in the footer, and flag any line where the total doesn't match quantity times price minus discount.
C||From a free-text clinical note, extract medications with dose, route, frequency and start date into a JSON array following FHIR MedicationStatement fields; note ambiguous abbreviations rather than guessing.
C||Design a JSON schema for extracting obligations from supplier contracts (party, action, deadline, condition, penalty), then explain how you would handle nested conditions like "unless X, in which case Y within 10 days of Z".
"""

CLASSIFICATION = r"""
S||Is this review positive or negative? "The battery lasts all day, love it."
S||Sentiment (positive/neutral/negative): "Delivery was on time. Nothing special."
S||Classify this ticket as billing, technical or account: "I can't log in after changing my password."
S||Is this email spam? "Congratulations! You won a free cruise, click here to claim."
S||Which department should handle this: "My salary was paid to the wrong bank account." Options: HR, Finance, IT.
S||Is this sentence a question or a statement? "The server restarts every night."
S||Label the language of this text: "Ich habe heute keine Zeit."
S||Urgent or not urgent: "The production database is down and customers can't check out."
S||Topic of this headline (sports, politics, tech, business): "Chipmaker shares jump after earnings beat"
S||Is this comment toxic? "Thanks for the help, really appreciated!"
S||Categorise this expense: "Uber from airport to hotel, 34 EUR". Options: travel, meals, office, other.
S||Does this message contain a request for a refund? "I'd like my money back for the broken kettle."
S|trigger_word|Analyze the sentiment of "meh".
S|trigger_word|Evaluate this review as positive or negative: "Worst purchase ever."
C||Classify each of these 12 customer messages against our 9-category taxonomy, where categories can overlap, explain borderline cases, and propose changes to the taxonomy where messages don't fit cleanly.
C||Decide whether this forum post violates our policy on medical misinformation, considering intent, the cited sources and whether it's satire; cite the relevant policy rules and explain your reasoning.
C||Given these support tickets, cluster them into root causes and estimate which engineering fix would remove the most tickets, explaining the assumptions.
C|short_hard|Is "the bank of the river" ambiguous for an intent classifier trained on banking queries, and how would you fix false positives like it?
"""

REWRITING = r"""
S||Make this more polite: "Send me the report now."
S||Fix the grammar: "me and him goes to the meeting yesterday"
S||Rewrite in a friendlier tone: "Your request has been denied."
S||Make this sentence shorter: "At this point in time we are not in a position to offer a discount."
S||Turn this into a bullet list: milk, eggs, bread, coffee
S||Capitalise the first letter of each word: "the quick brown fox"
S||Rewrite this as a formal email opener: "hey guys, quick one"
S||Paraphrase: "The meeting has been postponed until further notice."
S||Correct the spelling: "recieve, seperate, definately, accomodate"
S||Convert to passive voice: "The committee approved the budget."
S||Make this headline catchier: "New update improves app speed"
S||Rewrite this for a 10-year-old: "Photosynthesis is how plants make food from sunlight."
S||Change this to past tense: "I walk to work and buy a coffee."
S||Turn these notes into one sentence: "server down 2am, restarted 2:15, root cause disk full"
S||Remove the jargon: "Let's circle back and leverage our synergies going forward."
S||Write this in all lowercase: "PLEASE DO NOT REPLY TO THIS EMAIL"
S|trigger_word|Rewrite "we need to analyze the data" so it sounds less formal.
S|trigger_word|Reword "prove your identity" to sound friendlier on a login page.
C||Rewrite the following indemnification clause in plain English for a non-lawyer audience without changing its legal effect, and list every point where plain English would lose a nuance that matters.
C||Rewrite our 2,000-word security policy as a one-page guide for new employees, keeping every mandatory requirement, dropping rationale, and ordering items by the risk they address.
C||Rewrite this product announcement for three audiences (developers, CFOs, end users), each under 120 words, keeping the facts identical and adjusting what each audience cares about.
C|short_hard|Rewrite a haiku about autumn as a sonnet that keeps all its images.
"""

CHITCHAT = r"""
S||hi there
S||Hello!
S||good morning
S||How are you today?
S||thanks!
S||Thank you so much, that helped a lot.
S||Tell me a joke.
S||Tell me a fun fact about cats.
S||What's your name?
S||Are you a robot?
S||lol
S||ok cool
S||Can you recommend a good book for the weekend?
S||What should I have for lunch?
S||I'm bored, any ideas?
S||Say something nice.
S||Give me a motivational quote.
S||What's a good name for a goldfish?
S||Happy Friday!
S||bye
S||Who are you?
S||What can you help me with?
S||Write a short poem about coffee.
S||Write a limerick about a sleepy cat.
S||Suggest three names for a team of data engineers.
S||What's the capital of Australia?
S||How many legs does a spider have?
S||What colour do you get mixing blue and yellow?
S||Who wrote Romeo and Juliet?
S||What's the boiling point of water in Fahrenheit?
S||What does CPU stand for?
S||How many days are in a leap year?
S||What's the tallest mountain in the world?
S||Which planet is closest to the sun?
S||What is the plural of "mouse"?
S||What's a synonym for "happy"?
S||Give me an antonym of "generous".
S||Define "ephemeral" in one line.
S||What time zone is Tokyo in?
S||How do you say thank you in Japanese?
S|trigger_word|Prove you're not a robot, lol.
S|trigger_word|Explain why the sky is blue in one sentence.
S|trigger_word|Compare cats and dogs in one sentence.
S|trigger_word|Give me a step by step recipe for scrambled eggs.
S|trigger_word|Design a funny name for my Wi-Fi network.
S|trigger_word|Plan a cozy Sunday for me in three bullet points.
S|trigger_word|What's the derivative of my bad mood? Just kidding, tell me a joke.
S|trigger_word|My math teacher says "theorem" a lot. What does the word mean?
S|trigger_word|Reason with me: pizza or pasta tonight?
S|trigger_word|Evaluate my pun: "I'm reading a book on anti-gravity, it's impossible to put down."
S|trigger_word|Quick trade-off: tea or coffee in the afternoon?
S|trigger_word|Analyse this emoji: 🙂
C|short_hard|Is it ever rational to vote?
C|short_hard|Why is the sky dark at night if the universe is infinite?
C|short_hard|What would change if the speed of light were 10% lower?
C|short_hard|Steelman both sides of the free will debate.
C|short_hard|Why did the Bronze Age collapse?
"""

CODEGEN = r"""
S||Write a Python function that reverses a string.
S||Python one-liner to check if a list is empty.
S||How do I get the current date in JavaScript?
S||Bash command to count the lines in a file.
S||Write a function in Python that returns the maximum of a list without using max().
S||How do I read a JSON file in Python?
S||Show me a for loop in Go that prints 1 to 10.
S||How do I convert a string to an integer in Java?
S||Write a CSS rule that makes all links red.
S||HTML for a button that says "Submit".
S||How do I install requests with pip?
S||Git command to create a new branch called feature-x.
S||How do I remove duplicates from a list in Python?
S||Write a regex that matches a 5-digit US zip code.
S||Python: sort a list of dicts by the key "age".
S||How do I print "hello world" in Rust?
S||Command to find all .log files in the current directory and below.
S||Write a function that checks if a number is even, in C.
S||How do I make an HTTP GET request with curl?
S||Convert this Python list to a set: [1, 2, 2, 3]
S||What's the keyboard shortcut to comment a line in VS Code?
S||How do I undo the last git commit but keep the changes?
S||Write a Python function that counts vowels in a string.
S||Dockerfile line to copy requirements.txt into /app.
S||JavaScript: how do I add an item to the end of an array?
S||How do I create a virtual environment in Python?
S||Write a hello world Flask app.
S|trigger_word|Explain step by step how to print a variable in Python.
S|trigger_word|Design a Python class named Point with x and y attributes, nothing else.
S|trigger_word|Compare `==` and `is` in Python in one sentence.
S|trigger_word|Write a function called prove_even(n) that returns True if n is even.
S|trigger_word|Analyze: what does `len("abc")` return?
C||Implement an LRU cache in Python with O(1) get and put, thread-safe, with a max size and per-entry TTL, plus unit tests for eviction order and expiry.
C||Write an asyncio rate limiter (token bucket) that supports bursts, multiple keys, and fair waiting, and explain how you'd test it without real sleeps.
C||Write a Rust function that parses RFC 3339 timestamps without external crates, handling fractional seconds and offsets, with tests for edge cases.
C||Implement Dijkstra's algorithm in TypeScript for a graph with up to 1e5 nodes, using a binary heap, and return the path as well as the distance.
C||Write a Go HTTP middleware that retries idempotent requests with exponential backoff and jitter, respects context cancellation, and never retries non-idempotent methods.
C||Write a Python script that reads a 20 GB CSV file in chunks, deduplicates rows by a composite key across chunks, and writes Parquet, using bounded memory.
C||Implement a trie-based autocomplete in Java that returns the top 5 completions by frequency, supports updates, and explain the complexity.
C||Write a SQL migration plus Python code to add soft delete to an existing users table without downtime, including backfill and the application changes.
C||Write a Kubernetes operator reconcile loop in Go for a custom resource that manages a Postgres replica set, handling failover.
C||Implement a consistent hashing ring with virtual nodes in Python and show how keys move when a node is added.
C||Write a React hook that syncs state with localStorage across tabs, handles JSON parse errors and SSR, and includes tests.
C||Write a lock-free single-producer single-consumer ring buffer in C++ with correct memory ordering, and explain each atomic.
C||Build a small expression parser in Python (recursive descent) for + - * / parentheses and unary minus, with precedence and good error messages.
C|short_hard|Write a regex that matches valid IPv6 addresses, including compressed forms.
C|short_hard|Implement a B-tree insert in C.
C|short_hard|Write a function to detect a cycle in a directed graph and return the cycle.
C|short_hard|Write a CRDT counter that supports decrements.
C|short_hard|Make this recursive Fibonacci run in O(log n).
C|short_hard|Write a memory-safe string split in C.
"""

SQL = r"""
S||SQL to select all rows from the customers table.
S||Write a SQL query to count the orders in the orders table.
S||SQL: get all users older than 30 from users.
S||How do I sort a SQL result by created_at descending?
S||SQL to delete the row with id 5 from products.
S||Write a query that returns the distinct countries in the customers table.
S||How do I rename a column in PostgreSQL?
S||SQL: select the 10 most recent rows from logs by timestamp.
S||Insert a row into employees with name 'Ana' and dept 'HR'.
S||Write a SQL query to find the average price in the products table.
S||How do I create an index on users(email) in MySQL?
S||Update the status to 'shipped' for order 1042.
S|trigger_word|Explain step by step what SELECT * FROM t WHERE x = 1 does.
S|trigger_word|Analyze this query and tell me which table it reads: SELECT name FROM staff;
C||Write a SQL query that finds customers whose spending over a rolling 90-day window dropped by more than 50% compared with the previous 90 days, using window functions in PostgreSQL.
C||Given tables orders(id, customer_id, created_at), order_items(order_id, sku, qty, price) and refunds(order_id, amount, created_at), compute monthly net revenue per customer cohort (month of first order), handling partial refunds.
C||Write a query to find gaps and islands in a table of daily logins per user, returning each user's longest streak and when it started.
C||Our Postgres query joining events (2B rows) and users (10M) takes 40 s. Here's the plan summary: seq scan on events, hash join. Suggest indexes, partitioning and a rewritten query, and explain the trade-offs.
C||Write a recursive CTE that returns the full management chain for every employee, detects cycles in bad data, and reports depth.
C||Design a schema for multi-tenant billing with usage-based pricing, proration and credits, and write the query that produces an invoice for one tenant and month.
C|short_hard|SQL: median session length per day without a MEDIAN function.
C|short_hard|Dedupe a table keeping the latest row per key, in one statement, in MySQL 5.7.
"""

MATHS = r"""
S||What is 15% of 80?
S||What's 12 times 12?
S||Convert 5 kilometres to miles.
S||What is 1/4 as a decimal?
S||Round 3.14159 to two decimal places.
S||How many minutes are in 3 hours?
S||What's 250 divided by 5?
S||Is 17 a prime number?
S||What is the square root of 144?
S||If a shirt costs $40 and is 25% off, what's the price?
S||How many seconds are in a day?
S||What's 7 + 8 × 2?
S||Convert 100 °F to Celsius.
S||What is 2 to the power of 10?
S||How many centimetres in an inch?
S||What is the area of a rectangle 4 m by 6 m?
S|trigger_word|Prove that 2 + 2 = 4 is true. (Just kidding, is it 4?)
S|trigger_word|Solve the equation x + 3 = 10.
S|trigger_word|Find the derivative of x^2.
S|trigger_word|What is the integral of 1 dx?
S|trigger_word|Step by step: what's 10% of 50?
S|trigger_word|Is a 2x2 identity matrix the same as its transpose?
S|trigger_word|What's the probability of heads on a fair coin?
C|short_hard|Prove there are infinitely many primes.
C|short_hard|Prove that the square root of 2 is irrational.
C|short_hard|Show that every bounded monotone sequence converges.
C|short_hard|Evaluate the integral of x^2 e^x dx.
C|short_hard|How many ways can you tile a 2x10 board with dominoes?
C|short_hard|Prove that a graph with n nodes and n edges has a cycle.
C|short_hard|Find all integer solutions of x^2 - y^2 = 45.
C|short_hard|Is 2^61 - 1 prime? Justify.
C|short_hard|Expected number of coin flips to get two heads in a row?
C|short_hard|Derive the formula for the sum of a geometric series.
C||A bag has 5 red, 4 blue and 3 green balls. Three are drawn without replacement. What's the probability that at least two are the same colour? Show the work.
C||A loan of $250,000 at 5.4% annual interest, compounded monthly over 25 years: compute the monthly payment, the total interest, and how much sooner it's paid off with an extra $200 a month.
C||Two trains leave stations 300 km apart at 9:00 and 9:30, at 80 km/h and 100 km/h towards each other. When and where do they meet? Then redo it if the second train stops for 10 minutes halfway.
C||Solve the system: 2x + 3y - z = 5, x - y + 2z = 3, 3x + y + z = 10, and check the answer.
C||Find the eigenvalues and eigenvectors of [[2, 1], [1, 2]] and explain what they mean geometrically.
C||A test for a disease with 1% prevalence has 95% sensitivity and 90% specificity. If someone tests positive twice (independent tests), what's the probability they have it?
C||Show that the function f(x) = x^3 - 3x + 1 has exactly three real roots and approximate them to two decimals.
C||We ran an A/B test: control 10,000 users and 520 conversions, variant 10,000 users and 580 conversions. Is it significant at 5%? Compute the p-value and a 95% interval for the lift, and say what else you'd check.
"""

ANALYSIS = r"""
C||Compare Kafka, RabbitMQ and Amazon SQS for an order-processing system that needs exactly-once effects, 50k messages per second peaks and replay of the last 7 days. Recommend one and explain the trade-offs.
C||Our churn rose from 3% to 5.5% monthly after we raised prices 15% for new customers only. Existing customers weren't affected. What could explain churn rising, and what data would you pull to tell the hypotheses apart?
C||Analyse whether we should build or buy a feature flag system, considering a 12-engineer team, compliance needs (SOC 2), and a 3-year cost horizon.
C||Explain the CAP theorem and how it applies to choosing between DynamoDB and Spanner for a global inventory system.
C||Compare monolith, modular monolith and microservices for a 20-person startup expecting 10x traffic in two years; be concrete about deployment, testing and team structure.
C||Our p99 latency doubled after moving from c5 to c6g instances, but CPU use dropped. List likely causes and a plan to isolate the cause with experiments.
C||Evaluate the risks of letting an LLM write directly to our production database through tools, and propose guardrails at each layer.
C||Given revenue of $12M growing 40% yearly, 70% gross margin and $9M burn, how long is the runway with $20M in the bank under three hiring scenarios? State assumptions.
C||Why might a random forest outperform gradient boosting on a small, noisy tabular dataset? When would you expect the opposite?
C||Assess the second-order effects of a city introducing congestion pricing on small retailers in the charging zone.
C||Explain why our Kubernetes pods get OOM-killed even though the JVM heap is capped at 70% of the container limit.
C||Compare three ways to do zero-downtime schema migrations in Postgres and when each fails.
C||Critically evaluate the claim that remote work reduces productivity, distinguishing individual, team and company level evidence.
C||Explain the difference between a p-value and a Bayesian posterior probability to a product manager, using our checkout experiment as the example, and explain which one they actually want.
C||Our model's accuracy on the test set is 94% but users complain constantly. Reason through the possible causes, from data leakage to distribution shift to metric choice.
C||What are the main failure modes of RAG systems in enterprise search and how would you measure each?
C|short_hard|Why does adding more engineers to a late project make it later, and when is that false?
C|short_hard|Should a central bank target inflation or nominal GDP?
C|short_hard|Why do hash maps degrade under adversarial input, and how do languages defend?
C|short_hard|What's the weakest assumption in the efficient market hypothesis?
C|short_hard|Explain Raft leader election failure cases.
C|short_hard|When does eventual consistency break user expectations?
S|trigger_word|Compare these two numbers: 7 and 9. Which is bigger?
S|trigger_word|Analyze this word and tell me how many letters it has: "banana".
S|trigger_word|Evaluate: is Monday before Tuesday?
S|trigger_word|Explain why we have weekends, in one sentence.
S|trigger_word|Reason about this: if it's raining, should I take an umbrella?
S|trigger_word|Give me the pros and cons of working from a café, briefly.
"""

PLANNING = r"""
S||Make a packing list for a weekend beach trip.
S||Suggest a simple 3-day workout schedule for a beginner.
S||Give me a grocery list for a week of vegetarian dinners.
S||What should I bring to a job interview?
S||Create a to-do list for moving house.
S||Suggest an agenda for a 30-minute team meeting.
S||Plan a birthday party checklist for a 6-year-old.
S||What are five things to do in Paris on a first visit?
S||Give me a morning routine to be more productive.
S||List the steps to bake a basic chocolate cake.
S||Suggest a reading schedule to finish a 300-page book in two weeks.
S||Make a checklist for onboarding a new employee on day one.
S|trigger_word|Plan my evening: gym at 6, dinner at 8. Anything else I should fit in?
S|trigger_word|Design a simple weekly chore chart for two roommates.
S|trigger_word|Step by step, how do I plan a picnic?
C||Plan the migration of a 40-service monolith-era platform to Kubernetes over six months with five engineers: phases, dependencies, risks, rollback points and how to keep shipping features meanwhile.
C||Plan a product launch in the US, Germany and Japan with a $300k budget: channel mix per market, localisation, regulatory checks, a timeline and how you'll measure success.
C||Create a 12-week study plan to pass the AWS Solutions Architect Professional exam for someone who works full time, with weekly goals, labs and practice exam checkpoints.
C||We must cut cloud spend by 30% in a quarter without hurting SLOs. Plan the work: what to measure first, quick wins, structural changes, and how to sequence them with a team of three.
C||Plan a disaster recovery test for a payment system with an RPO of 1 minute and RTO of 15 minutes across two regions, including what could go wrong during the test itself.
C||Draft a 90-day plan for a new engineering manager inheriting a team with low morale, a large bug backlog and an unhappy product partner.
C||Plan a three-week trip through Japan for a family with two kids and a grandparent who can't walk far, balancing cities and countryside, with a budget of 8,000 euros.
C||Plan a phased rollout of SSO and SCIM for 3,000 employees across 60 SaaS apps, including app prioritisation, communication and a fallback for apps without SAML.
C|short_hard|Plan a GDPR-compliant data retention policy for a SaaS with EU and US customers.
C|short_hard|Sequence a rewrite of our billing system without double-charging anyone.
"""

GENERAL = r"""
S||What is the difference between a virus and bacteria? Keep it short.
S||What does HTTP stand for?
S||Who painted the Mona Lisa?
S||What's the largest ocean?
S||When did World War II end?
S||What is an API, in one sentence?
S||What is the chemical symbol for gold?
S||How many continents are there?
S||What does a VPN do, briefly?
S||What's the speed of light?
S||What language is spoken in Brazil?
S||What is a noun?
S||What year did the first iPhone come out?
S||What is the freezing point of water?
S||Name three primary colours.
S||What is photosynthesis, in one sentence?
S||What's the currency of Switzerland?
S||What does RAM stand for?
S||Who invented the telephone?
S||What is a haiku?
S||What is the capital of Canada?
S||What is a leap year?
S||What does "ASAP" mean?
S||What's the difference between "affect" and "effect"?
S||How many bytes are in a kilobyte?
S||What is machine learning, in one sentence?
S||What is the main ingredient in guacamole?
S||What's the time difference between London and New York?
S|trigger_word|Explain why leaves are green, briefly.
S|trigger_word|What does "theorem" mean?
S|trigger_word|Compare a lake and a pond in one sentence.
C|short_hard|Why did the Roman Republic fall?
C|short_hard|How does a transformer's attention scale with sequence length, and what are the workarounds?
C|short_hard|Why can't we just print more money to pay off national debt?
C|short_hard|How do vaccines based on mRNA avoid altering DNA?
C|short_hard|Explain quantum entanglement without the "spooky action" myth.
C|short_hard|Why is P vs NP hard to prove?
C|short_hard|Is Gödel's incompleteness theorem relevant to AI?
C|short_hard|What caused the 2003 Northeast blackout?
"""

ALL = {
    "support": SUPPORT,
    "hr_policy": HR,
    "summarisation": SUMMARISE,
    "extraction": EXTRACTION,
    "classification": CLASSIFICATION,
    "rewriting": REWRITING,
    "chitchat": CHITCHAT,
    "code_generation": CODEGEN,
    "sql": SQL,
    "maths": MATHS,
    "analysis": ANALYSIS,
    "planning": PLANNING,
    "general_knowledge": GENERAL,
}


def parse(block: str) -> list[tuple[str, list[str], str]]:
    """(label, tags, text) for each non-empty line."""
    out = []
    for line in block.strip().splitlines():
        label, tags, text = line.split("|", 2)
        assert label in ("S", "C"), line
        out.append(
            ("simple" if label == "S" else "complex", [t for t in tags.split(",") if t], text.replace("\\n", "\n"))
        )
    return out


# A second pass, written after the first count showed too few complex prompts for a held-out misroute rate to mean
# much (57 complex held out: one prompt was 1.75 points).
EXTRA = {
    "code_generation": r"""
C||Write a Python decorator that retries a function on specified exceptions with exponential backoff, supports both sync and async functions, and preserves the signature for type checkers.
C||Implement a thread-safe bounded blocking queue in Java without using java.util.concurrent collections, and explain how you avoid lost wake-ups.
C||Write a streaming JSON parser in Python that yields top-level array elements from a file larger than memory.
C||Write a TypeScript function that deep-merges two objects with correct types for nested optional fields, and tests for arrays and null.
C||Implement rate-limited, resumable file uploads in Go over HTTP with chunking and checksum verification on the server.
C||Write a Python function that computes the diff between two lists of lines (like diff -u) using the Myers algorithm.
C||Design and implement a plugin system in Python where plugins are discovered via entry points, can declare dependencies on each other, and are loaded in a valid order.
C||Write a SQL-backed job queue in Python using SELECT ... FOR UPDATE SKIP LOCKED, with retries, visibility timeouts and dead-lettering.
C||Implement a Bloom filter in Rust with configurable false-positive rate, and derive the number of hash functions you chose.
C||Write a minimal interpreter for a stack-based language with arithmetic, conditionals and loops in Python, with error reporting by line.
C||Convert this callback-based Node.js module to async/await and make sure errors in nested callbacks are not swallowed; explain the pitfalls with event emitters.
C||Write a function that schedules meetings for N people across time zones given their working hours and existing busy slots, returning the earliest common slot.
C||Implement optimistic concurrency control for a REST API that updates documents, using ETags, and show the client and server sides.
C||Write property-based tests with Hypothesis for a function that normalises phone numbers to E.164, and state the properties you test.
C||Implement a sliding-window log rate limiter in Redis with Lua so that the check and increment are atomic.
C|short_hard|Write a correct double-checked locking singleton in Java and explain why volatile is needed.
C|short_hard|Implement union-find with path compression and union by rank, and prove the complexity bound you claim.
C|short_hard|Write a topological sort that reports all cycles.
C|short_hard|Parse and evaluate cron expressions, including ranges and steps.
C|short_hard|Write a constant-time string comparison and explain why it matters.
S||Write a Python function that adds two numbers.
S||How do I print the type of a variable in Python?
S||Show me how to write an if/else in JavaScript.
S||Write a SQL comment line.
S||What's the Python syntax for a dictionary comprehension? A short example is enough.
S||How do I check the Node.js version installed?
S||Write a bash loop that prints the numbers 1 to 5.
S||How do I concatenate two strings in Java?
""",
    "sql": r"""
C||Write a query that computes 7-day retention by signup cohort from events(user_id, name, ts) where signup is the 'signed_up' event, and explain how you handle users with several signups.
C||Find the top 3 products by revenue in each country for last quarter, converting currencies with fx_rates on the order date, in one PostgreSQL query.
C||Write a query that detects orders whose amount differs from the sum of their order_items by more than 1 cent, and explain the rounding issues you'd expect.
C||Design the indexes for a table of 500M events queried by (user_id, ts range) and by (name, ts range), and explain the trade-offs of BRIN versus B-tree here.
C||Write a query that builds a funnel (visit -> signup -> first order within 14 days) with conversion rates per week, counting each user once per step.
C||Our nightly ETL does DELETE then INSERT into a 300M-row fact table and locks reports for an hour. Propose a better load pattern in PostgreSQL and write the SQL.
C||Explain the difference between READ COMMITTED and REPEATABLE READ in PostgreSQL with an example where the same transaction gives different results, and which one our billing job should use.
C||Write a query that assigns each support ticket to the on-call engineer whose shift covered the ticket's creation time, where shifts can overlap and the later-starting shift wins.
C|short_hard|Write a SQL query for running totals that reset every time the balance goes negative.
C|short_hard|Pivot monthly revenue per customer into columns for a dynamic number of months in PostgreSQL.
C|short_hard|Why is my NOT IN subquery returning no rows when the subquery contains NULL?
S||How do I select only the name column from the users table?
S||SQL to count rows grouped by country in customers.
S||How do I limit a MySQL query to 5 rows?
S||Write an UPDATE that sets active = false for user 12.
S||What does the SQL keyword DISTINCT do?
S||How do I add a column called phone to the contacts table?
S||SQL: select orders where status is 'pending'.
S||Drop the table temp_import.
""",
    "analysis": r"""
C||Compare event sourcing with a traditional CRUD model for an insurance claims system that must support audits and corrections years later.
C||We see 3% of Kafka consumer lag spikes at exactly the top of each hour. Reason through possible causes and how to confirm each one.
C||Our cloud bill grew 45% while traffic grew 10%. Build a hypothesis tree for where the money went and the queries you'd run against the billing export to check each branch.
C||Weigh the trade-offs of using an LLM to triage support tickets versus a fine-tuned classifier, including cost per ticket, latency, accuracy drift and compliance.
C||Analyse the impact of raising our free-tier limit from 1,000 to 5,000 API calls per month on conversion, infrastructure cost and abuse, and propose how to test it safely.
C||Explain why averaging p99 latencies across hosts is wrong and how to aggregate them correctly in our dashboards.
C||Is it better to shard our Postgres by tenant or by region? Consider our largest tenant being 30% of traffic and data residency rules in the EU.
C||Critique our OKRs: "Increase NPS by 10 points", "Ship 20 features", "Reduce churn". What is wrong with them and how would you rewrite them?
C||Estimate how many support agents we need to answer 90% of chats within 60 seconds, given 400 chats per hour at peak and 6 minutes average handling time, and explain the Erlang C assumptions.
C||Explain how a change in the default sort order of search results could reduce revenue even though click-through rate increased.
C||Compare gRPC and REST for internal service calls in a polyglot company, including debugging, load balancing and schema evolution.
C||Walk through the security implications of storing JWTs in localStorage versus httpOnly cookies for a single-page app with a separate API domain.
C|short_hard|Why do retries with no jitter cause thundering herds, and what's the math behind it?
C|short_hard|When is a bloom filter the wrong choice?
C|short_hard|Why might a model with higher AUC give worse business results?
C|short_hard|Explain Simpson's paradox using a hiring example and how to avoid being fooled by it.
C|short_hard|What breaks when clocks drift in a distributed lock?
C|short_hard|Is it ever right to denormalise an OLTP schema?
""",
    "maths": r"""
C|short_hard|Prove that there is no largest even number.
C|short_hard|Show that the sum of the first n odd numbers is n squared.
C|short_hard|What is the probability that two random integers are coprime? Explain.
C|short_hard|Prove by induction that 3^n - 1 is even for all n >= 1.
C|short_hard|How many trailing zeros does 100! have, and why?
C|short_hard|Solve the recurrence T(n) = 2T(n/2) + n log n.
C|short_hard|Find the limit of (1 + 1/n)^(n^2) as n goes to infinity.
C|short_hard|Birthday problem: how many people for a 50% chance of a shared birthday? Derive it.
C||A company's revenue grows 8% a year and costs grow 5% a year. Revenue is 10M and costs 12M today. In which year does it become profitable, and what is the cumulative loss until then?
C||Three machines produce 50%, 30% and 20% of the output with defect rates of 1%, 2% and 3%. A random item is defective. What's the probability it came from each machine?
C||A ladder 5 m long slides down a wall. When its foot is 3 m from the wall and moving away at 0.5 m/s, how fast is the top sliding down?
C||Find the minimum cost of a cylindrical can holding 1 litre if the top and bottom cost twice as much per square cm as the side.
S||What is 9 squared?
S||How many grams are in a kilogram?
S||What's 3/4 of 100?
S||Is 0 an even number?
S||What is 1000 minus 1?
S||How many weeks are in a year?
""",
    "planning": r"""
C||Plan the decommissioning of a legacy on-prem Oracle database used by 14 applications, with a dependency discovery phase, migration waves and a data validation strategy.
C||Create a hiring plan for growing a data team from 3 to 12 people in a year: roles in order, interview loops, onboarding, and how to keep quality up.
C||Plan a company offsite for 120 people across three countries with a budget of 150k EUR, covering venue criteria, travel, agenda design and risk planning.
C||Plan an incident response runbook for a suspected credentials leak in our CI system, from detection to post-incident review.
C||Lay out a six-month roadmap to make our mobile app accessible (WCAG 2.2 AA), including an audit, prioritisation, design system changes and testing with users.
C||Plan a pricing change from per-seat to usage-based for 2,000 existing customers, including grandfathering, communication, billing system changes and churn mitigation.
C|short_hard|Plan a blue-green migration for a stateful service with long-lived websocket connections.
C|short_hard|Plan capacity for Black Friday when last year's peak was 8x normal and we've since moved to autoscaling.
S||Give me a packing list for a business trip of two days.
S||Suggest a simple weekly meal plan.
S||What should be on a checklist for leaving the office on Friday?
S||Plan a 20-minute walk break routine for my workday.
S||Make a list of things to prepare before a job interview.
""",
    "summarisation": r"""
C||Summarise the key differences between GDPR and CCPA for a product team deciding what to build first for privacy compliance, in a table with the practical implications.
C||Summarise the history of the debate over net neutrality in the US since 2005, with the main legal turning points and the arguments of each side.
C||Summarise what's known about the long-term effects of remote work on junior employees' career development, distinguishing strong from weak evidence.
C||Summarise the trade-offs between the main consensus algorithms (Paxos, Raft, PBFT) for an architecture review, in under 300 words.
C||I need a summary of the Basel III capital requirements for our board's risk committee: what changed from Basel II, and what it means for a mid-sized lender.
S||Summarise in one line: "The cafeteria will serve a vegan menu every Wednesday starting next month."
S||Give me a short summary: "IT will update all laptops on Saturday. Leave them on and connected to power."
S||One-sentence summary please: "Sales grew 5% last quarter, mainly thanks to the new product line."
S||Summarise: "Bob can't make the 3pm call, he suggests tomorrow at 10 instead."
S||TLDR: "Parking lot B is closed for repairs until Friday. Use lot C."
S||Summarise this note: "Remember to water the plants and lock the back door when you leave."
""",
    "extraction": r"""
C||Extract all dates, amounts and parties from the loan agreement I'll paste, resolve relative dates like "30 days after the Closing Date" to absolute dates, and output JSON with the source sentence for each value.
C||Extract a structured timeline (JSON: time, actor, action, evidence) from an incident chat log where timestamps are in mixed time zones and some messages are replies to earlier ones.
C||Turn these 40 free-text job postings into a normalised JSON dataset (title, seniority, salary range in EUR per year, remote policy, skills), inferring seniority consistently and explaining your rules.
C||From scanned receipts with OCR errors, extract merchant, date, total and VAT, correcting obvious OCR mistakes, and output confidence per field with the reasoning.
C||Extract entity relationships from this paragraph of a news article (who acquired whom, when, for how much, with which conditions) into a knowledge-graph triple format, handling coreference.
C||Map each field of our legacy customer export (42 columns with cryptic names) to our new schema, propose transformations, and flag fields that can't be mapped.
C|short_hard|Extract addresses from free text in 30 countries into a single schema.
""",
    "classification": r"""
C||Classify these 20 app store reviews by the product area they criticise and by whether the complaint is about a bug, a missing feature or pricing, and summarise what the patterns suggest we fix first.
C||Decide for each of these contract clauses whether it is standard, negotiable or a deal-breaker for us, given our standard positions, and explain why.
C||Build a labelling guide for classifying support tickets by urgency, with definitions, edge cases and ten worked examples.
C||Given these transaction descriptions, classify which ones are likely fraudulent, explain the signals you used, and estimate your false-positive rate.
C|short_hard|Classify the rhetorical strategy of each paragraph in this op-ed.
""",
    "rewriting": r"""
C||Rewrite this incident report for customers: be honest about what happened, don't speculate about causes we haven't confirmed, explain what we're changing, and keep it under 250 words.
C||Rewrite this 1,500-word technical design doc as an executive summary that keeps every decision and open question, for a reader with five minutes.
C||Rewrite this job description to remove gendered and exclusionary language, keep the requirements accurate, and explain each change.
C||Rewrite this Python tutorial chapter for readers who already know Java, mapping each concept to its Java equivalent and pointing out false friends.
C|short_hard|Rewrite this apology so it takes responsibility without admitting legal liability.
""",
    "support": r"""
C||A customer's VAT invoice shows the wrong country because they moved from Austria to Germany mid-year; the invoices for January to June were issued with Austrian VAT. Explain what needs to be corrected, whether credit notes are needed, and draft the message to the customer.
C||A business customer wants a refund for 40 of the 120 chairs they ordered because their office plans changed, but 15 were already assembled. Using our return policy, work out what we can offer and draft a reply that keeps the account.
C||Several customers report that our mobile app charges them twice when they retry a failed payment. Write the internal bug report with reproduction hypotheses, customer impact and a temporary workaround for support.
C||Draft a macro for support agents handling GDPR data deletion requests, covering identity verification, what we must and must not delete, timelines and edge cases like open invoices.
C||A customer is threatening a chargeback over a desk delivered with a scratch after we offered a 10% discount. Analyse the cost of each option (refund, replacement, larger discount, chargeback) and recommend one.
C|short_hard|How do we handle a refund request for a gift bought by someone else?
S||Where is my order?
S||Can I change my order after paying?
S||How do I unsubscribe from the newsletter?
S||Do you have gift cards?
S||What payment methods do you accept?
S||Can I pick up my order in store?
""",
    "hr_policy": r"""
C||An employee on a fixed-term contract ending in three months becomes pregnant and asks whether her contract will be extended. Outline what German law requires, what our policy says, and the risks of each decision for the company.
C||Design a compensation banding system for a 300-person company with engineers in Berlin, Lisbon and remote in Poland, addressing location pay, internal equity and transparency.
C||We need to lay off 8% of staff across three countries. Outline the legal consultation steps in Germany, France and the UK, the timelines, and how to communicate it humanely.
C||Analyse exit interview data themes (manager quality 40%, pay 25%, growth 20%, other 15%) and propose a retention plan with measurable targets and a budget estimate.
C|short_hard|Can we require employees to return to the office full time if their contract doesn't specify a place of work?
S||When do I get my payslip?
S||How do I change my bank details for salary?
S||What is the public transport subsidy?
S||Who do I contact about my pension?
""",
    "general_knowledge": r"""
C|short_hard|How did the Treaty of Westphalia shape the modern idea of state sovereignty?
C|short_hard|Why does inflation hurt some borrowers and help others?
C|short_hard|What are the strongest arguments against utilitarianism?
C|short_hard|How does CRISPR-Cas9 find its target, and why are off-target edits possible?
C|short_hard|Why do some countries with high GDP per capita rank low on life satisfaction?
C|short_hard|How do public-key signatures prove who sent a message without revealing the key?
C|short_hard|Why did the Soviet Union collapse so quickly in 1991?
C|short_hard|Explain the difference between correlation and causation with a case where the correlation is real but misleading.
S||What is the capital of Japan?
S||How many players are on a football team?
S||What's the largest planet in our solar system?
S||What does "FAQ" stand for?
S||Who was the first person on the moon?
S||What is the opposite of "ancient"?
""",
    "chitchat": r"""
C|short_hard|Write a short story whose twist only works if the reader notices the narrator never uses the letter e.
C|short_hard|Debate yourself on whether AI art is art, with the strongest arguments on each side.
S||What's up?
S||Good night!
S||Tell me something interesting.
S||I'm back.
S||Can you keep me company for a minute?
S||Wish me luck for my exam!
""",
}
