"""The HTTP endpoints of each role. Endpoints find what they share (the role's runtime)
on `request.app.state.runtime`; create_app chooses which routes a role serves."""
