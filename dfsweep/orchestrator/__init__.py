"""The driver: plan and run the Tune sweep (sweep), gather scores (collect), compute (stats), show (report)."""
