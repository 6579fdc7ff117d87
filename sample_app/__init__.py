"""The sample application phaseshift scales: users and items, configured by its environment.

A real web service (Starlette on uvicorn) with the seed's User Service and Data
Service. The operator's renderer expresses each architecture phase purely through
the environment below; the same image serves every phase and role.

Commands (`python -m sample_app ...`)
-------------------------------------
  serve [--port P]    HTTP service for APP_ROLE (the default command, unless worker
                      or consumer)
  worker [--port P]   consume jobs from QUEUE_URL; /metrics on P
  consume [--port P]  consume the events of KAFKA_BOOTSTRAP as a consumer group,
                      committing after handling (at-least-once); /metrics on P
  migrate --from sqlite:///PATH --to postgresql://...  [--batch-size N] [--max-batches N]
                      copy, verify (counts, per-row merge, checksums); idempotent and
                      resumable; exit 0 verified, 1 mismatch, 3 stopped early, 4 unreachable
  loadgen --users N --duration S --target URL  [--ramp S] [--write-ratio F] [--json]

HTTP API
--------
  POST /users {name, email}            201 user | 409 duplicate email
  GET  /users?limit=&offset=           newest users
  GET  /users/{id}                     user with item_count
  POST /items {owner, name, price_cents?}   201 item | 422 unknown owner
  GET  /items?owner=&limit=            an owner's items (or the newest items)
  GET  /items/{id}
  GET  /static/{path}                  static files, Cache-Control for an edge cache
  GET  /healthz, /readyz, /metrics
Bad input gets a 4xx JSON body {"error": code, "detail": message}; an unreachable
database gets 503.

Environment
-----------
  PHASESHIFT_PLAN      plan name; the `plan` label of every metric series
  APP_ROLE             monolith (default) | user-service | data-service | gateway | worker |
                       consumer
  DATABASE_URL         sqlite:///PATH (phase 1) or postgresql://user:pass@host:port/db
  READ_REPLICA_URLS    comma-separated postgresql:// URLs for reads (phase 2+); a user's
                       own reads stay on the primary for READ_YOUR_WRITES_SECONDS (5)
                       after their write, and a row missing on a replica is re-read
                       from the primary
  DATABASE_SHARD_URLS  comma-separated postgresql:// URLs: hash sharding by user id
                       (a user's items live on the user's shard)
  REDIS_URL            redis://host:port/0: cache-aside, invalidated on write
  REDIS_CLUSTER        true: REDIS_URL is a startup node of a Redis Cluster
  CACHE_TTL_SECONDS    cache entry lifetime (default 30)
  CACHE_LOCAL_TTL_SECONDS   with REDIS_URL, the longest an entry is served from the
                       process's own memory in front of Redis (default 1; 0 turns that
                       level off, every lookup then goes to Redis); the staleness bound
                       should another process's invalidation be lost
  CACHE_LOCAL_MAX_ENTRIES, CACHE_LOCAL_MAX_BYTES   bounds of that level, least recently
                       used first out (defaults 10000 and 33554432, i.e. 32 MiB; 0 turns
                       the level off)
  QUEUE_URL            amqp://user:pass@host:port/%2F: writes publish jobs (phase 3+)
  KAFKA_BOOTSTRAP      host:port[,host:port]: domain events to topic phaseshift.events
  USER_SERVICE_URL, DATA_SERVICE_URL   upstreams of the gateway role
  STATIC_DIR           static files (default: this package's static/)
  PORT                 listen port (default 8080)
Optional, with defaults: READ_YOUR_WRITES_SECONDS (5), ACTIVE_USER_WINDOW_SECONDS (300),
LOG_LEVEL (INFO).

Metrics (every series labelled plan)
------------------------------------
  http_requests_total{route,method,code}   route is the template, e.g. /users/{id}
  http_request_duration_seconds{route,method}   histogram
  app_active_users        distinct users (X-User-Id or the user in the request), 5 min
  cache_hits_total, cache_misses_total, cache_errors_total, cache_up
  cache_local_hits_total  the hits served from the process's own memory (also counted in
                          cache_hits_total); the rest of the hits went to Redis
  queue_depth, queue_published_total, queue_publish_errors_total, queue_outbox_pending
  worker_jobs_total{outcome}, db_queries_total{target}, db_errors_total,
  events_published_total, events_publish_errors_total, gateway_upstream_errors_total{service}
  events_consumed_total{type}, events_consume_errors_total, events_consumer_lag (consumer)

Degradation: a cache outage sends reads to the database (cache_errors_total, cache_up 0);
a queue outage holds jobs in memory and publishes them when the broker returns
(queue_publish_errors_total, queue_outbox_pending); a lost replica sends reads to the
primary (db_queries_total{target="primary-fallback"}).
"""
