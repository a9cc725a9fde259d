"""The static files (stylesheet, scripts), as the package `portal.static`: the wheel ships
them inside the portal package and the app finds them with importlib.resources."""
