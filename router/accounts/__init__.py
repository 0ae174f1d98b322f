"""Tenant accounts, in one place: the policy (account.py: rate buckets and the budget ledger of budget.py, on
plain data), the view the stages read (view.py: the accounts this router owns) and the store that feeds it from
Kafka (store.py: loads a tenant's counters at a takeover, settles them from `llm.usage`, snapshots them)."""
