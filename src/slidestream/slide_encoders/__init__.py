"""slide_encoders stage."""
