"""Where findings go: the console, the audit log, Slack, Jira and a generic webhook.

``base`` holds the seams (``Sink``, ``LifecycleSink``, ``SinkFanout``, ``IncidentRecord``);
``factory.open_sinks`` builds the configured sinks behind a ``delivery.SinkDispatcher``;
``retry`` holds the retry rules every remote sink shares; ``deadletter`` and ``redeliver``
keep and resend what still failed.
"""
