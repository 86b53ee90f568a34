import json
import logging
import os

from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .models import Note

log = logging.getLogger(__name__)

LATEST_KEY = "latest"  # cached list of the newest notes, dropped whenever a note is added
HITS_KEY = "hits"  # page views, shared by every replica when the cache is Redis
MAX_LEN = Note._meta.get_field("text").max_length


def latest_notes():
    try:
        notes = cache.get(LATEST_KEY)
    except Exception as exc:  # a cache outage degrades to reading the database
        log.warning("cache get failed: %s", exc)
        return [n.as_dict() for n in Note.objects.all()[:50]]
    if notes is None:
        notes = [n.as_dict() for n in Note.objects.all()[:50]]
        try:
            cache.set(LATEST_KEY, notes, 30)
        except Exception as exc:
            log.warning("cache set failed: %s", exc)
    return notes


def forget_latest():
    try:
        cache.delete(LATEST_KEY)
    except Exception as exc:
        log.warning("cache delete failed: %s", exc)


def count_hit():
    """Count a page view in the cache (atomic INCR on Redis); None if the cache is down."""
    try:
        try:
            return cache.incr(HITS_KEY)
        except ValueError:  # the key does not exist yet
            cache.add(HITS_KEY, 0, timeout=None)
            return cache.incr(HITS_KEY)
    except Exception as exc:
        log.warning("cache incr failed: %s", exc)
        return None


def create_note(text):
    text = (text or "").strip()
    if not text:
        return None, "text is required"
    if len(text) > MAX_LEN:
        return None, f"text is longer than {MAX_LEN} characters"
    note = Note.objects.create(text=text)
    forget_latest()
    return note, None


@never_cache
def index(request):
    error = None
    if request.method == "POST":
        note, error = create_note(request.POST.get("text"))
        if note is not None:
            return redirect("index")  # 302 → GET: the browser does not re-post on reload
    elif request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    context = {
        "notes": latest_notes(),
        "error": error,
        "hits": count_hit(),
        "cache": "redis" if os.environ.get("REDIS_URL") else "local memory",
        "release": os.environ.get("BERTH_RELEASE", "dev"),
        "replica": os.environ.get("BERTH_REPLICA", "web.0"),
        "max_len": MAX_LEN,
    }
    return render(request, "notes/index.html", context, status=400 if error else 200)


@csrf_exempt  # a JSON API for scripts; the HTML form above keeps CSRF protection
@never_cache
def api_notes(request):
    if request.method in ("GET", "HEAD"):
        return JsonResponse({"notes": latest_notes()})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return JsonResponse({"error": "invalid JSON"}, status=400)
        text = body.get("text") if isinstance(body, dict) else None
    else:
        text = request.POST.get("text")
    note, error = create_note(text if isinstance(text, str) else None)
    if error:
        return JsonResponse({"error": error}, status=400)
    return JsonResponse(note.as_dict(), status=201)


@never_cache
def health(request):
    """200 when the database answers SELECT 1, else 503 (the load balancer's health check)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        log.warning("health check failed: %s", exc)
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
