"""What a request used and cost, and the record it leaves."""
