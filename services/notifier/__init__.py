"""The notifier: real-time push, email and SMS for lead outcomes and performance alerts."""
