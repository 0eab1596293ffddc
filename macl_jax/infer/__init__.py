"""Generation: a photo and speech to a talking-head video."""
