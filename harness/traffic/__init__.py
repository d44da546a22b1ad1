"""Traffic: logged requests imported as a suite, pairwise and label statistics read from the store, gateway export."""
