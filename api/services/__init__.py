"""The service layer: every read and write of records goes through here."""
