"""`imagetool run` and the container verbs: a monitor process per container (monitor.py),
json-file logs (logs.py), bridge networking (network.py), published ports through a
userspace proxy (ports.py) and the container records under <store root>/containers/<id>/
(records.py). cli.py registers the verbs with imagetool's command line."""
