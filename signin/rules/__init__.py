"""The rules layer: what may happen to users, sessions, services and second factors, and what each change ends.

A new rule goes here, as one function every door calls (the account API, the
CLI): it checks, changes the store, and emits its event. Rules know nothing of
HTTP; what they refuse they raise (``refusals``), and each door says it in its
own words.
"""
