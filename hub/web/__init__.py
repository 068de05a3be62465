"""What every TRE web service shares: sign-in through the hub, strict headers, CSRF rules."""
