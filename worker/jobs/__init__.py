"""The job contract: payloads, email rules, stamps, serialization, sealed passwords and the errors
results name."""
