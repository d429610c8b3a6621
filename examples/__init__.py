"""Examples of a user's own code monitored with the capture library (``driftlake``)."""
