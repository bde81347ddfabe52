"""The on-device side: runs bundles under budgets. Never imports model_zoo or converters."""
