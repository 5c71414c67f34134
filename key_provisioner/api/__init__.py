"""The HTTP admin API: routes call the service layer; errors are problem+json."""
