"""Staying in control of what runs: human approvals and resumes that never repeat a side effect
(:mod:`.approvals`, :mod:`.journal`, :mod:`.runs`), and budgets, the kill switch and the audit
ledger. Each is an interceptor of the operation pipeline (:mod:`aikit_components.operations`), so it
covers every operation kind."""
