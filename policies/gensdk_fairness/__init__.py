"""gensdk_fairness: bias audits with fairlearn's metric definitions, for tables, text and images."""
