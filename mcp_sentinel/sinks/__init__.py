"""Where findings go: the console, the audit log, and (later) chat and ticketing."""
