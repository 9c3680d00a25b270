"""What CRM clients connect to: the event socket, and later the command API and agent page."""
