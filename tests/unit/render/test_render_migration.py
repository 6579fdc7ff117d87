"""The 1 -> 2 migration Job."""

from __future__ import annotations

from render_helpers import containers, env_of

from phaseshift.render import RenderContext, render_migration_job


def test_migration_job_copies_sqlite_into_the_primary(make_plan) -> None:
    job = render_migration_job(make_plan(), RenderContext(db_password="pw"))
    assert job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    migrate = containers(job)[0]
    assert migrate["command"][:4] == ["python", "-m", "sample_app", "migrate"]
    args = migrate["command"]
    assert args[args.index("--from") + 1] == "sqlite:////data/app.db"
    assert args[args.index("--to") + 1] == "$(TARGET_DATABASE_URL)"
    ref = env_of(migrate)["TARGET_DATABASE_URL"]["secretKeyRef"]
    assert ref == {"name": "shop-credentials", "key": "postgres-primary-url"}
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "shop-sqlite", "readOnly": True}
    mount = next(m for m in migrate["volumeMounts"] if m["name"] == claim["name"])
    assert mount["readOnly"] is True and mount["mountPath"] == "/data"
    assert job["metadata"]["labels"]["phaseshift.dev/phase"] == "2"
