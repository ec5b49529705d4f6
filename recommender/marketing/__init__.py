"""Marketing analytics: RFM segments, repeat-sales KPIs and the marketer's HTML report."""
