"""The edge from phase 3: nginx caching static content in front of the app.

It stands in for a CDN inside the cluster (a real CDN is configured outside it, with
this Service as its origin). It proxies to the app's entry Service, `<plan>-app`, in every
phase: the monolith's in phase 3, the gateway's in phase 4 (see microservices.py). So a
3 <-> 4 transition never rolls the edge, and the switch between them is that Service's,
made at Route once the new workloads are Ready. (An edge pointed at the gateway's own
Service at Provision would wait for a Service that only Route creates: nginx does not
start with an upstream it cannot resolve.)
"""

from __future__ import annotations

from typing import Any

from phaseshift.render import components
from phaseshift.render.encoding import content_hash
from phaseshift.render.pods import (
    container_security,
    empty_dir,
    http_probe,
    pod_security,
    pod_template,
    resources,
    topology_spread,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import ENTRY_SERVICE, port, service
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH, rolling

COMPONENT = "edge"
SUFFIX = "edge"
CONFIG = "edge-config"
NGINX_UID = 101  # the nginx user of the official image
LISTEN = 8080  # unprivileged: the container drops every capability

_NGINX_CONF = """worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log /dev/stdout;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  proxy_cache_path /var/cache/nginx/edge levels=1:2 keys_zone=edge:50m max_size=1g
                   inactive=60m use_temp_path=off;
  upstream origin {{ server {origin}:80; keepalive 32; }}
  server {{
    listen {listen};
    location = /nginx-health {{ access_log off; return 200 "ok\\n"; }}
    location /static/ {{
      proxy_cache edge;
      proxy_cache_valid 200 301 302 10m;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://origin;
    }}
    location / {{
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_pass http://origin;
    }}
  }}
}}
"""


def origin(scope: Scope) -> str:
    return scope.name(ENTRY_SERVICE)


def nginx_conf(scope: Scope) -> str:
    return _NGINX_CONF.format(origin=origin(scope), listen=LISTEN)


def _deployment(scope: Scope) -> dict[str, Any]:
    selector = scope.selector(SUFFIX)
    nginx = {
        "name": "nginx",
        "image": scope.image("nginx"),
        # -e: the error log nginx opens before it reads the configuration (the build's
        # default path is not writable here).
        "command": [
            "nginx",
            "-e",
            "stderr",
            "-g",
            "daemon off;",
            "-c",
            "/etc/nginx/edge/nginx.conf",
        ],
        "ports": [{"name": "http", "containerPort": LISTEN}],
        "readinessProbe": http_probe("/nginx-health", "http", period=5),
        "livenessProbe": http_probe("/nginx-health", "http"),
        "resources": resources(components.size(scope, "nginx")),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nginx/edge", "readOnly": True},
            {"name": "cache", "mountPath": "/var/cache/nginx"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec = {
        "securityContext": pod_security(NGINX_UID),
        "automountServiceAccountToken": False,
        "containers": [nginx],
        "volumes": [
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
            empty_dir("cache"),
            empty_dir("tmp"),
        ],
        "topologySpreadConstraints": topology_spread(selector),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": scope.metadata(SUFFIX, COMPONENT),
        "spec": {
            "replicas": components.edge_replicas(scope),
            "selector": {"matchLabels": selector},
            "strategy": rolling(),
            # nginx has no Prometheus endpoint of its own (stub_status is not one).
            "template": pod_template(
                scope,
                workload=SUFFIX,
                component=COMPONENT,
                spec=spec,
                metrics_port=None,
                meshed=True,
                annotations={ANNOTATION_CONFIG_HASH: content_hash(nginx_conf(scope))},
            ),
        },
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    if not scope.catalog.edge.edge_cache:
        return []
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": scope.metadata(CONFIG, COMPONENT),
        "data": {"nginx.conf": nginx_conf(scope)},
    }
    return [
        config,
        service(scope, SUFFIX, COMPONENT, scope.selector(SUFFIX), [port("http", 80, "http")]),
        _deployment(scope),
    ]
