"""The Prometheus JMX exporter of the JVM tiers (Kafka, Cassandra): their metrics live
only in MBeans, so the pod loads the exporter as a -javaagent that serves a selection of
them on METRICS_PORT.

The kafka and cassandra images carry the agent and its selection under /opt/jmx. An
image without them (a user's override) still starts, without metrics: the start script
loads the agent only where it finds it, and says so when it does not.
"""

from __future__ import annotations

METRICS_PORT = 9404
AGENT = "/opt/jmx/jmx_prometheus_javaagent.jar"
SELECTION = "/opt/jmx/exporter.yaml"


def load_agent(variable: str, agent: str = AGENT) -> str:
    """Shell lines that append the agent to the JVM options in `variable`, which the
    tier's own start script passes to java, when the image has the agent."""
    option = f"-javaagent:{agent}={METRICS_PORT}:{SELECTION}"
    return (
        f"if [ -f {agent} ]; then\n"
        f'  {variable}="${{{variable}:-}} {option}"; export {variable}\n'
        f"else\n"
        f'  echo "no JMX exporter at {agent}: this node serves no metrics" >&2\n'
        f"fi\n"
    )


def metrics_port() -> dict[str, object]:
    return {"name": "metrics", "containerPort": METRICS_PORT}
