"""One ml_collections config per experiment; `get_config('smoke')` gives each one's tiny variant."""
