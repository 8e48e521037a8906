"""Ways alerts come in: the Alertmanager webhook receiver, and pollers."""
