"""The processor: dedupe leads into contacts, record leads, apply board rules, publish outcomes."""
