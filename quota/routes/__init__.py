"""One router per resource of the quota API."""
