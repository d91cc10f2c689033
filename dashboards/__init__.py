"""Grafana dashboards as code: typed panels, their renderer to Grafana JSON, and a local preview."""
