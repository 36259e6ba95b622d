"""The Slack room: Bolt app, listeners, middleware and pure Block Kit builders."""
