"""Staying in control of what runs: approvals, budgets, the kill switch, the audit ledger and the
effect journal (issue 14). Each is an interceptor of the operation pipeline or a small store next
to one; see docs/security.md."""
