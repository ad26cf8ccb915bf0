"""The job spec: load (YAML with positions), compose (extends, --set), validate, model.

Kept import-free on purpose: the runtime imports `launcher.spec.model` inside the container
and must not pay for jsonschema or YAML.
"""
