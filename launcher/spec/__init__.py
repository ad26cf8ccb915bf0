"""The job spec: load (yamlpos: YAML with positions), compose (extends, --set), validate (schema,
normalise, rules, recipe_config), model (the frozen JobSpec).

Kept import-free on purpose: the runtime imports `launcher.spec.model` and `launcher.spec.refs`
inside the container and must not pay for jsonschema or YAML.
"""
