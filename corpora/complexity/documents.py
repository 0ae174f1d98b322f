"""Hand-written long documents and code, each with easy and hard questions about it.

Long pasted text with a trivial question is simple (the answer is stated in the text, or the task is
mechanical); a question that needs the text understood as a whole, reasoning over it, or judgement is
complex. Written for this repository; names, companies and numbers are invented.
"""

from __future__ import annotations

DOCS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "doc_qa",
        """REMOTE WORK AND LEAVE POLICY (version 3.2, effective 1 February 2025)

1. Scope. This policy applies to all permanent and fixed-term employees of Northwind Analytics GmbH and its
subsidiaries, except contractors, who are covered by their service agreements.

2. Remote work. Employees may work remotely up to three days per week, subject to their manager's approval.
Teams may define core office days. Employees working remotely must be reachable between 10:00 and 15:00 local
time. Working from another country for more than 20 working days per calendar year requires approval from HR
and Legal because of tax and social security rules. Equipment provided by the company remains company property
and must be returned within 10 days of leaving.

3. Annual leave. Full-time employees receive 28 working days of paid annual leave per calendar year. Part-time
employees receive leave pro rata to their contracted hours. New joiners receive leave pro rata from their start
date. Up to 5 unused days may be carried over to the next year and must be taken by 31 March; days beyond that
expire unless the employee could not take them because of illness or parental leave.

4. Sick leave. Employees must inform their manager before 10:00 on the first day of illness. A doctor's
certificate is required from the fourth calendar day of illness. Sick days do not count against annual leave.

5. Parental leave. Employees are entitled to parental leave according to the German Federal Parental Allowance
and Parental Leave Act (BEEG). In addition, the company pays a top-up to 80% of net salary for the first eight
weeks of parental leave, provided the employee has completed their probation period.

6. Special leave. Employees receive paid special leave for their own wedding (2 days), the birth of a child
(1 day, in addition to parental leave), moving house (1 day, once per year), and the death of a close family
member (2 days).

7. Requests. Leave is requested in the HR portal at least two weeks in advance for periods longer than three
days. Managers respond within five working days; a request without a response after five working days counts as
approved.

Contact: people@northwind.example, extension 4410.""",
        [
            "How many days of annual leave does a full-time employee get?",
            "What's the email address for HR questions in this policy?",
            "When does a doctor's certificate become necessary?",
            "How many days of special leave do I get for moving house?",
            "What version of the policy is this?",
            "Summarise section 4 in one sentence.",
            "By what date must carried-over days be taken?",
        ],
        [
            "I joined on 1 August, work 80% part-time, and was sick for two weeks in December so I couldn't take my "
            "planned leave. How many leave days can I carry into next year, and until when? Explain using the "
            "policy's rules.",
            "Identify gaps or ambiguities in this policy that could lead to disputes, and suggest wording to fix "
            "each one.",
            "My manager hasn't responded to my leave request for 6 working days but now says no. Who is right "
            "under section 7, and what are the weak points of that rule for the company?",
            "Compare this policy with UK statutory requirements and list what would need to change for UK staff.",
        ],
    ),
    (
        "doc_qa",
        """From: Marta Kowalski <marta.k@example.com>
To: support@brightdesk.example
Subject: Order BD-20931 still not delivered
Date: 12 March 2025

Hello,

I ordered a standing desk (model Ascent 160, oak top) on 18 February, order number BD-20931. Your website said
delivery in 5-7 working days. It's now almost three weeks later. The tracking page has said "in transit" since
24 February. I've taken a day off work twice to wait for the delivery, which never came. I'd like to know where
the desk is and when it will arrive. If it can't be delivered by 20 March I want to cancel and get a full refund,
including the 49 EUR express delivery fee I paid.

Regards,
Marta Kowalski

---
From: BrightDesk Support <support@brightdesk.example>
Date: 13 March 2025

Dear Marta,

Thank you for your message and sorry for the wait. Our carrier reports the parcel was damaged in their depot and
returned to our warehouse. We've shipped a replacement today, tracking number 00340434161094015902, with
estimated delivery on 18 March. We have refunded the express delivery fee of 49 EUR.

Kind regards,
Jonas, BrightDesk Support

---
From: Marta Kowalski
Date: 19 March 2025

Jonas, the desk arrived yesterday but the oak top has a crack along one edge and two screws are missing. I'm not
happy. I don't want to wait another three weeks. What are my options?""",
        [
            "What's the order number in this email thread?",
            "What model of desk did Marta order?",
            "When did the replacement ship?",
            "How much was the express delivery fee?",
            "Who answered for BrightDesk support?",
            "What is the tracking number of the replacement?",
            "Translate the subject line into German.",
        ],
        [
            "Draft Jonas's reply to Marta's last email. Offer options that balance her frustration, consumer rights "
            "in the EU for a defective item, and the cost to us, and recommend one.",
            "Analyse what went wrong in this case from the customer's first email to the last, and propose process "
            "changes that would have prevented each problem.",
            "Write an internal incident summary of this case for the logistics team, with a timeline, the root "
            "causes you can infer, and what we still need to find out from the carrier.",
        ],
    ),
    (
        "doc_qa",
        """Product sync - meeting notes (transcript, lightly edited)
Attendees: Leila (PM), Tom (eng lead), Ravi (design), Chen (data), Sofia (sales)

Leila: Okay, agenda today: the export feature, the pricing page, and the Q3 roadmap. Export first. Tom?
Tom: CSV export is done. Excel export is blocked, the library we picked can't do more than 65k rows. We either
switch libraries, which is about a week, or cap exports at 65k and tell people.
Sofia: Two of our biggest prospects asked specifically for Excel with all rows. One of them is a 200k ARR deal.
Leila: Then capping is a non-starter for now. Tom, switch libraries.
Tom: Fine, but then the audit log work slips by a week.
Chen: The audit log is what the compliance team at Halvorsen asked for, their renewal is in August.
Leila: August is far enough. Let's slip the audit log by one week. Next, pricing page.
Ravi: I have two designs. A shows three tiers, B shows a slider based on seats. Users in tests found B confusing,
four out of six couldn't find the enterprise contact button.
Sofia: Sales prefers A, it's easier to anchor on the middle tier.
Leila: A it is. Ravi, can you add the annual discount toggle?
Ravi: Yes, by Thursday.
Leila: Roadmap. Chen, what does usage say?
Chen: Dashboards are used by 80% of active accounts weekly, alerts by 15%, the API by 9% but those accounts pay
3x more on average. Alert usage dropped after we changed the default thresholds in May.
Tom: We could revert the thresholds, that's a day of work.
Leila: Let's do that and measure for a month before we decide on the alerting rewrite. For Q3 then: Excel export,
audit log, API rate-limit improvements. I'll write it up.
Sofia: Can we get a date for SSO? Three deals mention it.
Tom: Not in Q3 with this team size.
Leila: I'll raise headcount with leadership. Action items: Tom switch Excel library, Ravi pricing page A with toggle
by Thursday, Chen set up alert usage tracking, Leila roadmap doc and headcount ask. Thanks all.""",
        [
            "Who attended this meeting?",
            "Which pricing page design was chosen?",
            "By when will Ravi add the annual discount toggle?",
            "What's the row limit of the current Excel library?",
            "What percentage of active accounts use dashboards weekly?",
            "Turn the action items at the end into a bullet list.",
        ],
        [
            "Write the meeting minutes: decisions with their rationale, action items with owners and deadlines, and "
            "open risks. Point out any decision that was made without enough data.",
            "As the VP of product, critique the prioritisation in this meeting. Is slipping the audit log the right "
            "call given the numbers mentioned? What would you ask before agreeing?",
            "Estimate the revenue at risk from each decision made in this meeting using the figures mentioned, and "
            "state your assumptions.",
            "Summarise this meeting for the CEO in five bullet points, focusing on trade-offs and what needs her "
            "decision.",
        ],
    ),
    (
        "doc_qa",
        """Postmortem: checkout outage, 4 June 2025
Status: final. Author: on-call SRE (payments). Severity: SEV-1.

Summary: Between 14:02 and 14:49 UTC, 38% of checkout attempts failed with HTTP 502. Estimated lost orders: 2,900.

Timeline (UTC):
13:55 Deploy 2025.06.04-3 of payment-gateway starts (canary 5%).
14:02 Error rate on canary rises to 4%. Canary analysis passes because the threshold is 5%.
14:10 Deploy promoted to 50%.
14:14 Alert "checkout 5xx > 2%" fires. On-call acknowledges at 14:19.
14:25 On-call suspects the database; DB metrics normal.
14:31 Someone in #payments notices the deploy. Rollback started.
14:38 Rollback stuck: the old image was garbage-collected from the registry cache on 3 nodes.
14:44 Image re-pulled, rollback completes.
14:49 Error rate back to baseline.

Root cause: The new version upgraded the HTTP client library, whose default connection pool size changed from 100
to 10. Under peak load, requests to the fraud-scoring service queued for longer than the 2 s upstream timeout of
the load balancer, which returned 502.

Contributing factors: canary threshold too high relative to the baseline error rate (0.1%); alert on checkout did
not link recent deploys; registry cache eviction policy removed images still referenced by the previous release.

Action items:
1. Lower canary error threshold to 1% absolute or 5x baseline, whichever is lower. Owner: release eng. Due: 20 June.
2. Pin connection pool size explicitly in config. Owner: payments. Due: 10 June.
3. Show recent deploys in alert payloads. Owner: observability. Due: 30 June.
4. Keep images of the last 3 releases pinned in registry cache. Owner: platform. Due: 30 June.""",
        [
            "How long did the outage last?",
            "What was the severity?",
            "Who owns action item 2?",
            "When was the rollback started?",
            "How many orders were lost, according to the estimate?",
            "List the action items' due dates.",
            "What HTTP status did failing checkouts return?",
        ],
        [
            "Review this postmortem. Are the action items enough to prevent a recurrence? What's missing, especially "
            "about detection time and the 17 minutes between the alert and the rollback?",
            "Explain the causal chain from the library upgrade to the 502s in detail, and propose a load test that "
            "would have caught it before the canary.",
            "Estimate the revenue impact if the average order is 64 EUR, and argue whether canary analysis should "
            "compare against baseline statistically rather than with a fixed threshold. Propose a method.",
            "Rewrite the root-cause section so that it is blameless and precise, and add the missing 'why' levels.",
        ],
    ),
    (
        "doc_qa",
        """MASTER SERVICES AGREEMENT - EXCERPT (Schedule B: Service Levels and Liability)

B.1 Availability. The Supplier shall make the Platform available 99.9% of the time in each calendar month,
excluding Scheduled Maintenance notified at least 5 Business Days in advance and not exceeding 8 hours per month.

B.2 Service Credits. If availability in a month falls below 99.9%, the Customer is entitled to a credit of 5% of
the monthly fee for each full 0.1% below the target, capped at 30% of the monthly fee. Service Credits are the
Customer's sole and exclusive remedy for unavailability, save as set out in clause B.5.

B.3 Claims. The Customer must claim Service Credits within 30 days of the end of the affected month.

B.4 Limitation of liability. Except for liability that cannot be limited by law, breach of confidentiality, or
the Supplier's indemnity obligations under clause 14, each party's total aggregate liability arising out of or in
connection with this Agreement in any Contract Year shall not exceed 100% of the fees paid or payable in that
Contract Year. Neither party shall be liable for loss of profits, revenue, goodwill or anticipated savings.

B.5 Termination for chronic unavailability. If availability falls below 99.0% in any two consecutive months or any
three months in a rolling twelve-month period, the Customer may terminate the Agreement on 30 days' written notice
without penalty and receive a refund of prepaid fees for the period after termination.

B.6 Data. On termination the Supplier shall, at the Customer's choice, return or delete Customer Data within
30 days, and certify deletion in writing. The Supplier may retain Customer Data in backups for up to 90 days, which
shall remain subject to the confidentiality obligations.

B.7 Governing law. This Schedule is governed by the laws of England and Wales.""",
        [
            "What availability does the supplier promise?",
            "Which law governs this schedule?",
            "How long does the customer have to claim service credits?",
            "How long may backups keep customer data?",
            "What is the cap on service credits?",
            "Copy clause B.3 exactly.",
        ],
        [
            "Availability was 99.62% in March and 98.9% in April and May. What credits are we owed for each month, "
            "and can we terminate? Walk through the clauses.",
            "We are the customer. Which clauses are weak for us and what would you negotiate, with proposed wording "
            "and the fallback position for each?",
            "Does B.2's 'sole and exclusive remedy' interact with B.4's liability cap in a way that could stop us "
            "recovering losses from a data breach caused by an outage? Reason it through.",
            "Check this schedule against GDPR Article 28 requirements for processors and list what's missing.",
        ],
    ),
    (
        "doc_qa",
        """Q2 SALES REPORT - EMEA (internal)

Region       | Q1 revenue (kEUR) | Q2 revenue (kEUR) | Q2 target (kEUR) | New logos Q2 | Churned logos Q2
DACH         | 4,120             | 4,480             | 4,600            | 14           | 3
UK & Ireland | 3,310             | 3,050             | 3,500            | 8            | 6
France       | 1,980             | 2,240             | 2,100            | 11           | 1
Nordics      | 1,240             | 1,310             | 1,300            | 5            | 0
Southern EU  | 870               | 1,020             | 1,100            | 9            | 2
Total        | 11,520            | 12,100            | 12,600           | 47           | 12

Notes:
- UK & Ireland lost two enterprise accounts to a competitor offering a 30% discount on three-year contracts.
- France exceeded target thanks to the partnership with a systems integrator signed in March.
- Average deal size fell from 62 kEUR in Q1 to 54 kEUR in Q2, mostly in DACH and Southern EU.
- Pipeline coverage for Q3 is 2.6x (target 3x). Headcount: 21 account executives, 3 open positions.
- Two large DACH renewals (combined 900 kEUR ARR) are due in Q3 and flagged at risk by customer success.""",
        [
            "What was total Q2 revenue?",
            "Which region had no churned logos?",
            "How many account executives are there?",
            "What was the Q2 target for France?",
            "How many new logos did the Nordics get in Q2?",
            "Convert the table to CSV.",
        ],
        [
            "Which regions missed target, by how much in absolute and percentage terms, and what explains each miss "
            "according to the notes? Then forecast Q3 revenue with a range and state your assumptions.",
            "Write a one-page briefing for the CRO: the three biggest risks for Q3 from this report, quantified, "
            "with a recommended action for each.",
            "Is the drop in average deal size a pricing problem or a mix problem? Explain what the data here can "
            "and cannot tell us and what you'd need to decide.",
        ],
    ),
    (
        "doc_qa",
        """City council approves expansion of protected bike lanes

The city council voted 7-4 on Tuesday to add 38 kilometres of protected bike lanes over the next three years, at a
cost of 24 million euros. The plan connects the northern residential districts with the university and the
central station, and removes about 1,100 on-street parking spaces, roughly 6% of the total in the affected areas.

Supporters pointed to a 2023 pilot on Lindenstrasse, where cycling trips rose 41% and collisions involving cyclists
fell from 19 to 7 in a year. Shop owners on the street reported mixed results: a survey by the local business
association found that 45% of shops saw lower footfall, while 30% reported more customers. Critics on the council
argued that the pilot ran during a year with unusually mild weather and that the survey had only 62 responses.

Councillor Ingrid Holm, who voted against, said the money would be better spent on bus frequency in the outer
districts, where car ownership is highest and incomes are lowest. The mayor's office replied that a bus
improvement package of 9 million euros was approved last year and is being implemented.

Construction is expected to start in spring. The first section, between the university and the central station,
should open by the end of next year.""",
        [
            "How many kilometres of bike lanes were approved?",
            "What was the council's vote?",
            "How much will it cost?",
            "Which section opens first?",
            "Give this article a shorter headline.",
            "Who is Ingrid Holm?",
        ],
        [
            "Evaluate the evidence each side uses in this article. How strong is the pilot data, and what would a "
            "proper evaluation of the expansion need to measure?",
            "Write a balanced op-ed of about 400 words responding to this decision from the perspective of a "
            "low-income resident of the outer districts.",
            "Estimate the cost per additional daily cyclist using the pilot numbers, list the assumptions, and "
            "compare it to the bus package.",
        ],
    ),
    (
        "doc_qa",
        """Abstract. We study whether retrieval-augmented generation (RAG) reduces factual errors of small language
models (125M-1.3B parameters) on enterprise question answering. On a benchmark of 2,400 questions over internal
documentation from three companies, retrieval reduced unsupported claims by 38% on average, but accuracy gains were
concentrated in questions whose answer appears verbatim in one retrieved passage (+31 points), while questions
requiring synthesis across two or more passages improved by only 4 points. Larger retrieval windows (k=10 vs k=3)
hurt the smallest models, whose accuracy fell by 6 points, consistent with distraction by irrelevant context. We
also find that fine-tuning on 5,000 synthetic question-answer pairs closes half the gap to a 7B model on single-
passage questions but not on multi-passage ones. We release our evaluation protocol but not the data, which is
proprietary.

1. Introduction. Enterprises increasingly route simple queries to small models for cost reasons...""",
        [
            "How many questions were in the benchmark?",
            "What model sizes were studied?",
            "Was the data released?",
            "By how much did retrieval reduce unsupported claims?",
            "Give me the title-style summary of this abstract in under ten words.",
        ],
        [
            "What does this abstract imply for a company that wants to route queries between a small and a large "
            "model? Design a routing policy based on these findings and explain its weak points.",
            "Critique the methodology as far as the abstract allows: what confounders could explain the k=10 vs k=3 "
            "result, and what experiment would settle it?",
            "The authors didn't release the data. How much should that change how we weigh their claims, and how "
            "could we replicate the key result internally?",
        ],
    ),
]

CODE: list[tuple[str, str, list[str], list[str]]] = [
    (
        "code_review",
        """```python
def order_total(items, discount_code=None):
    # items: list of dicts with price and qty
    total = 0
    for item in items:
        total += item["price"] * item["qty"]
    if discount_code == "SAVE10":
        total = total * 0.9
    elif discount_code == "FREESHIP":
        total = total - 4.99
    if total > 100:
        shipping = 0
    else:
        shipping = 4.99
    return round(total + shipping, 2)
```""",
        [
            "What language is this?",
            "What's the name of this function?",
            "Add a docstring to this function.",
            "Rename `total` to `subtotal`.",
            "What does this function return when items is empty and there's no discount code?",
            "Add type hints to the function signature.",
        ],
        [
            "Find the bugs in this function, especially around FREESHIP and the free-shipping threshold, and rewrite "
            "it so that money is handled correctly.",
            "Write pytest tests for this function that cover the edge cases, including the interaction between "
            "discounts and the shipping threshold.",
            "Refactor this so new discount types can be added without editing the function, and explain the design.",
        ],
    ),
    (
        "code_review",
        """```javascript
function UserList({ teamId }) {
  const [users, setUsers] = useState([]);
  useEffect(() => {
    fetch(`/api/teams/${teamId}/users`)
      .then(r => r.json())
      .then(data => setUsers(data.users));
  }, []);
  return (
    <ul>
      {users.map(u => <li>{u.name}</li>)}
    </ul>
  );
}
```""",
        [
            "Is this React or Vue?",
            "What's the name of the component?",
            "Change the <ul> to an <ol>.",
            "What URL does it fetch?",
            "Add a comment above the useEffect saying what it does.",
        ],
        [
            "Review this component. What happens when teamId changes quickly, and how do you fix the race and the "
            "missing dependencies properly?",
            "Rewrite this component with loading and error states, request cancellation and a test using React "
            "Testing Library.",
            "Why does React warn about this list, and what other problems would you flag in code review?",
        ],
    ),
    (
        "code_review",
        """```go
func processAll(jobs []Job) map[string]Result {
    results := make(map[string]Result)
    var wg sync.WaitGroup
    for _, j := range jobs {
        wg.Add(1)
        go func() {
            defer wg.Done()
            r := process(j)
            results[j.ID] = r
        }()
    }
    wg.Wait()
    return results
}
```""",
        [
            "What language is this?",
            "What's the return type of processAll?",
            "Rename processAll to ProcessAll.",
            "Which package does WaitGroup come from?",
            "Add a comment saying this runs jobs in parallel.",
        ],
        [
            "Is this code safe? Explain every concurrency bug in it and fix them.",
            "Rewrite this with a bounded worker pool of N goroutines, context cancellation and error propagation.",
            "How would you test this function for data races and for correct results under load?",
        ],
    ),
    (
        "code_review",
        """```python
@app.route("/search")
def search():
    q = request.args.get("q", "")
    conn = sqlite3.connect("shop.db")
    cur = conn.cursor()
    cur.execute("SELECT id, name, price FROM products WHERE name LIKE '%" + q + "%'")
    rows = cur.fetchall()
    return jsonify([{"id": r[0], "name": r[1], "price": r[2]} for r in rows])
```""",
        [
            "What web framework is this?",
            "What database does it use?",
            "What's the route path?",
            "Rename the function to search_products.",
            "What columns does the query select?",
        ],
        [
            "Review this endpoint for security and reliability problems and rewrite it properly.",
            "Explain how an attacker could exploit this, with an example payload, and how to fix it without losing "
            "the LIKE search.",
            "This endpoint is slow on 2 million products. Explain why and propose changes to the query and schema.",
        ],
    ),
    (
        "code_review",
        """```java
public List<String> readLines(String path) throws IOException {
    BufferedReader reader = new BufferedReader(new FileReader(path));
    List<String> lines = new ArrayList<>();
    String line;
    while ((line = reader.readLine()) != null) {
        lines.add(line.trim());
    }
    return lines;
}
```""",
        [
            "What language is this?",
            "What does this method return?",
            "Rename the method to loadLines.",
            "Add a Javadoc comment saying it reads a file.",
            "What does trim() do here?",
        ],
        [
            "What's wrong with this method in production use? Fix the resource handling and the charset issue.",
            "Rewrite this to stream very large files without loading them into memory, and discuss the API change.",
        ],
    ),
    (
        "code_review",
        """```bash
#!/bin/bash
cd /srv/app
git pull
pip install -r requirements.txt
systemctl restart app
rm -rf /tmp/app-cache/*
echo "deployed"
```""",
        [
            "What shell is this script for?",
            "Add a comment at the top: 'Deploy script, do not edit on the server'.",
            "What does the last line print?",
            "Which service does this restart?",
        ],
        [
            "Review this deploy script. What can go wrong, and how would you make it safe (failures, partial "
            "deploys, rollback)?",
            "Turn this into a zero-downtime deploy for two servers behind a load balancer. Explain each step.",
        ],
    ),
    (
        "code_review",
        """```python
_cache = {}

async def get_user(user_id):
    if user_id in _cache:
        return _cache[user_id]
    user = await db.fetch_user(user_id)
    _cache[user_id] = user
    return user
```""",
        [
            "Is this function async?",
            "What's the name of the module-level variable?",
            "Add a type hint saying user_id is an int.",
            "What does the function return?",
        ],
        [
            "What happens when 100 concurrent requests ask for the same uncached user? Fix it without a global lock.",
            "This cache grows forever and serves stale users. Design a fix with TTL, size bounds and invalidation "
            "when a user is updated, and write the code.",
        ],
    ),
    (
        "code_review",
        """```sql
SELECT c.name, SUM(o.amount) AS total
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id
WHERE o.created_at >= '2025-01-01'
GROUP BY c.name
ORDER BY total DESC;
```""",
        [
            "What does this query sort by?",
            "Which tables does this query use?",
            "Rename the alias total to revenue.",
            "Format this query in lowercase keywords.",
        ],
        [
            "This query is supposed to list all customers including those with no orders this year, but some are "
            "missing. Explain why and fix it. Are there other bugs?",
            "Rewrite this query to also show each customer's share of total revenue and rank, and explain how it "
            "behaves with ties and NULLs.",
        ],
    ),
    (
        "code_review",
        """```c
char *copy_name(const char *src) {
    char buf[32];
    strcpy(buf, src);
    return buf;
}
```""",
        [
            "What language is this?",
            "What is the size of buf?",
            "Rename buf to name.",
        ],
        [
            "List every bug in this function and rewrite it safely, explaining ownership of the returned memory.",
        ],
    ),
    (
        "code_review",
        """```typescript
type ApiResponse<T> = { ok: true; data: T } | { ok: false; error: string };

async function getJson<T>(url: string): Promise<ApiResponse<T>> {
  const res = await fetch(url);
  if (!res.ok) return { ok: false, error: res.statusText };
  return { ok: true, data: await res.json() };
}
```""",
        [
            "Is this TypeScript or JavaScript?",
            "What's the name of the type alias?",
            "Rename getJson to fetchJson.",
            "What does the function return on a 404?",
        ],
        [
            "Is `data: await res.json()` actually type-safe here? Explain and show how to validate the payload at "
            "runtime with a schema while keeping the types.",
            "Extend this with retries, timeouts via AbortController and typed error kinds, and explain the design.",
        ],
    ),
]
