"""Code defaults for every setting. Override in instance/config.py or NEWSLETTERS_* env vars.

Every setting here is documented in README.md ("Configuration").
"""


class DefaultConfig:
    # Never a production default: create_app refuses to start without one.
    SECRET_KEY: str | None = None
    # Earlier SECRET_KEYs (a list), still accepted for links in mail already sent and for
    # sessions after a rotation (Flask's own setting); new links are signed with
    # SECRET_KEY. Needs SUPPRESSION_HASH_KEY set (see the README, "Rotating SECRET_KEY").
    SECRET_KEY_FALLBACKS: list[str] = []
    # None means SQLite in the instance folder (see create_app).
    SQLALCHEMY_DATABASE_URI: str | None = None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}

    # Scheme and host of every link inside mails, used as given.
    PUBLIC_BASE_URL = "http://localhost:5000"

    # Mail. MAIL_SERVER unset = the embedded default: mail is captured locally.
    MAIL_SERVER: str | None = None
    MAIL_PORT = 25
    MAIL_USE_TLS = False
    MAIL_USE_SSL = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_DEFAULT_SENDER = "KL Nyhedsbreve <nyhedsbreve@kl.dk>"
    # MAIL FROM of every message; bounces go here. Defaults to the sender's address.
    MAIL_ENVELOPE_FROM: str | None = None
    MAIL_TIMEOUT_SECONDS = 30
    # Domain used in Message-ID and List-Id headers.
    MAIL_DOMAIN = "nyhedsbreve.kl.dk"
    # The dev-only page /dev/mail that shows captured mail. None = on when the
    # app runs in debug mode with mail captured locally.
    DEV_MAILBOX: bool | None = None

    # KL's footer in every mail.
    CONTACT_LINE = "KL · Weidekampsgade 10 · 2300 København S · Tlf. 3370 3370 · kl@kl.dk"
    LINKEDIN_URL = "https://www.linkedin.com/company/kl---kommunernes-landsforening"
    X_URL = "https://x.com/KLKommunerne"

    # Sending (the outbox now, the bulk sender later).
    SEND_RATE_PER_SECOND = 0
    SEND_MAX_PER_CONNECTION = 100
    SEND_CONNECTIONS = 1
    SEND_RETRY_BACKOFF_SECONDS = 30
    SEND_RETRY_MAX_BACKOFF_SECONDS = 3600
    SEND_PAUSE_AFTER_FAILURES = 20
    # A mail that still cannot be handed over after this long is marked failed.
    SEND_GIVE_UP_AFTER_HOURS = 72
    WORKER_LEASE_SECONDS = 120
    WORKER_POLL_SECONDS = 5
    WORKER_BATCH_SIZE = 50
    # Deliveries of an edition a worker claims at a time.
    SEND_BATCH_SIZE = 200
    # Run the delivery worker as a thread inside the web process (the embedded default).
    WORKER_IN_PROCESS = True
    # Scale-out: with a broker URL (redis://... or amqp://...), Celery workers run the
    # jobs instead of the in-process worker: celery -A wsgi.celery worker --beat
    CELERY_BROKER_URL: str | None = None
    CELERY_RESULT_BACKEND: str | None = None

    # Feeds (newsletters/feeds): fetched politely, then turned into digests.
    # How often each enabled feed is fetched by the scheduler.
    FEEDS_FETCH_INTERVAL_MINUTES = 30
    # After a failure the next attempt waits the interval, doubling per failure, up to this.
    FEEDS_MAX_BACKOFF_HOURS = 24
    # One deadline for the whole fetch of a feed: name lookup, connecting, TLS, headers,
    # body and every redirect. A server slower than this is recorded as failing.
    FEEDS_TIMEOUT_SECONDS = 20
    # Feeds (and their redirects) on loopback, private, link-local (cloud metadata),
    # multicast or reserved addresses are refused unless this is true: whoever adds a
    # feed must not make the server fetch from the network it stands in.
    FEEDS_ALLOW_PRIVATE = False
    # A feed larger than this is not read (and recorded as an error).
    FEEDS_MAX_BYTES = 5_000_000
    # Feeds fetched at the same time. The threads only wait on the network; parsing is
    # done one feed at a time (measured: more threads only add contention).
    FEEDS_CONCURRENCY = 4
    # Processes that parse fetched feeds (feedparser is pure Python: in the fetching
    # process it would hold the GIL the fetchers and the database need). 0 = parse in
    # the fetching process.
    FEEDS_PARSE_PROCESSES = 2
    # None = "KL-Nyhedsbreve/1.0 (+PUBLIC_BASE_URL)": who we are, and where to find us.
    FEEDS_USER_AGENT: str | None = None
    # Length of an item's summary in a digest (characters; cut at a word).
    FEEDS_SUMMARY_CHARS = 400
    # Items in one digest, newest first.
    DIGEST_MAX_ITEMS = 40
    # A scheduled digest goes at its hour or within this many minutes after it (a worker
    # that was stopped catches up), never later: a slot missed by more is skipped and
    # recorded, and its items go in the next digest. From 1 to 720.
    DIGEST_CATCH_UP_MINUTES = 60

    # Outgoing webhooks (newsletters/webhooks). Endpoints on loopback, private,
    # link-local, multicast or reserved addresses are refused unless this is true (also
    # plain http:// is then allowed); checked when an endpoint is added and again at
    # every connection.
    WEBHOOKS_ALLOW_PRIVATE = False
    # Endpoints called at the same time (each endpoint's events go in order).
    WEBHOOKS_CONCURRENCY = 4
    # One deadline for a whole call: connecting, TLS, sending, the answer.
    WEBHOOKS_TIMEOUT = 10
    # After a failed call: the first retry waits this long, doubling each time up to the
    # maximum, until WEBHOOKS_RETRY_HOURS after the event (then it is given up).
    WEBHOOKS_RETRY_BACKOFF_SECONDS = 30
    WEBHOOKS_RETRY_MAX_BACKOFF_SECONDS = 3 * 3600
    WEBHOOKS_RETRY_HOURS = 24
    # An endpoint whose every call failed for this long is disabled, the reason shown.
    WEBHOOKS_DISABLE_AFTER_HOURS = 24
    # Deliveries a worker claims at a time.
    WEBHOOKS_BATCH_SIZE = 50

    # Links in mails.
    CONFIRM_MAX_AGE_DAYS = 7
    MANAGE_MAX_AGE_DAYS = 30

    # How long a transaction waits for a lock held by another (SQLite's busy timeout,
    # PostgreSQL's lock_timeout) before the database is "busy" (newsletters/busy.py).
    # Long enough that the worker's sending lanes ride out contention on a loaded
    # machine; with BUSY_RETRIES a request still ends well within gunicorn's 30 s.
    DATABASE_LOCK_TIMEOUT_SECONDS = 10
    # The same for `flask worker` processes, which nobody waits on.
    WORKER_LOCK_TIMEOUT_SECONDS = 30
    # A web request whose work is one transaction is run again this many times when the
    # database is busy; after that it gets a 503 with Retry-After, never a 500.
    BUSY_RETRIES = 1
    # Rows an import writes per chunk: each chunk is a few short transactions, so a large
    # import never holds the database's write lock for more than a moment (a chunk of
    # 5000 enrolments about a tenth of a second on an idle core; 1000 made the commits,
    # each a WAL checkpoint's share, a fifth of a 100 000-row import on SQLite).
    IMPORT_CHUNK_ROWS = 5000

    # Abuse limits. The per-address limit counts confirmation and link mails.
    ADDRESS_MAILS_PER_HOUR = 3
    RATELIMIT_SUBSCRIBE = "30 per hour; 200 per day"
    RATELIMIT_LINK_REQUEST = "10 per hour"
    # Staff login POSTs per IP (any account; Flask-Limiter).
    RATELIMIT_LOGIN = "10 per minute; 50 per hour"
    # Failed staff logins per account from addresses and browsers that have never logged
    # in to it: past this many within the period, each further attempt from such a
    # place waits 1, 2, 4, ... seconds after the account's last failure (staff/throttle.py).
    # Places the account has logged in from before are never held up by it. The period
    # is also how long failures are remembered. (It used to refuse the account to
    # everyone for the period, which let anybody lock an account.)
    RATELIMIT_LOGIN_EMAIL = "10 per hour"
    # Failed logins to one account from one address (or known browser) before each
    # further attempt from there waits 1, 2, 4, ... seconds; the wait grows to at most
    # LOGIN_MAX_DELAY_SECONDS.
    LOGIN_FAILURES_BEFORE_DELAY = 5
    LOGIN_MAX_DELAY_SECONDS = 900
    # Two factors (TOTP, staff/twofactor): always required of administrators; true here
    # requires them of editors too (each is sent to set them up at the next login).
    TWOFA_REQUIRED_FOR_EDITORS = False
    # Minutes between a right password and the code (or the set-up) of the second step;
    # the half-way state lives in the signed session cookie and is no login.
    TWOFA_STEP_MINUTES = 10
    # The name an authenticator app shows next to the account.
    TWOFA_ISSUER = "KL Nyhedsbreve"
    # Key from which the key that encrypts stored TOTP secrets is derived (HKDF). None =
    # derived from SECRET_KEY; set it explicitly so that rotating SECRET_KEY keeps every
    # person's authenticator app working.
    TWOFA_ENCRYPTION_KEY: str | None = None
    # Earlier TWOFA_ENCRYPTION_KEYs (a list, or one text), still read after a rotation
    # until `flask staff reseal-2fa` has sealed every secret under the current one.
    TWOFA_ENCRYPTION_KEY_FALLBACKS: list[str] = []
    # How long a browser that logged in is remembered as known (a signed cookie).
    STAFF_DEVICE_MAX_AGE_DAYS = 365
    # Test sends of an edition per staff account.
    RATELIMIT_TEST_SEND = "10 per hour"
    RATELIMIT_STORAGE_URI = "memory://"
    # X-RateLimit-* headers serve API clients, not a browser posting a form, and cost
    # a fifth of a subscribe POST (measured: 0.44 of 2.16 ms).
    RATELIMIT_HEADERS_ENABLED = False
    # Number of trusted reverse proxies in front of the app (X-Forwarded-For).
    PROXY_COUNT = 0

    # Bounces and list hygiene (newsletters/bounces/). A hard bounce stops mail to the
    # address at once; soft bounces do when BOUNCE_SOFT_LIMIT of them arrive within
    # BOUNCE_SOFT_WINDOW_DAYS.
    BOUNCE_SOFT_LIMIT = 3
    BOUNCE_SOFT_WINDOW_DAYS = 30
    # Where `flask bounces process` reads bounce mail when no option says otherwise:
    # a Maildir path, or an IMAP server (IMAPS on 993 unless BOUNCE_IMAP_SSL is false).
    BOUNCE_MAILDIR: str | None = None
    BOUNCE_IMAP_HOST: str | None = None
    BOUNCE_IMAP_PORT: int | None = None
    BOUNCE_IMAP_SSL = True
    BOUNCE_IMAP_USERNAME: str | None = None
    BOUNCE_IMAP_PASSWORD: str | None = None
    BOUNCE_IMAP_FOLDER = "INBOX"
    # Key of the HMAC that identifies suppressed addresses without storing them. None =
    # derived from SECRET_KEY; set it explicitly so that rotating SECRET_KEY keeps erased
    # people suppressed ("hex:..." for the derived one: `flask subscribers suppression-key`).
    SUPPRESSION_HASH_KEY: str | None = None
    # Pending subscriptions never confirmed are deleted after this many days (the
    # scheduler runs the purge daily; `flask subscribers purge-pending` runs it now).
    PENDING_PURGE_DAYS = 30
    # Lifetime of the one-click subscribe links in the welcome letter.
    JOIN_MAX_AGE_DAYS = 60
    # Welcome letters an administrator can send per hour (each to every enrolled person).
    RATELIMIT_WELCOME_LETTER = "5 per hour"
    # Requests one REST API token may make (Flask-Limiter syntax); past it, 429 with
    # Retry-After. Each token has its own count.
    API_RATE_LIMIT = "600 per minute"
    # Path to swagger-ui-dist (npm install), the assets of /api/v1/docs.
    SWAGGER_UI_DIST: str | None = None
    # Rows per page on the staff's subscriber and audit pages.
    STAFF_PAGE_SIZE = 50

    # Request bodies: larger ones are answered 413 before they are read (also a chunked
    # body is cut off there). The import upload alone may be larger.
    MAX_CONTENT_LENGTH = 10 * 1024 * 1024
    IMPORT_MAX_CONTENT_LENGTH = 50 * 1024 * 1024
    # Form fields (not files) parsed into memory, and parts of a multipart body.
    MAX_FORM_MEMORY_SIZE = 500_000
    MAX_FORM_PARTS = 1000

    # i18n
    BABEL_DEFAULT_LOCALE = "da"
    BABEL_DEFAULT_TIMEZONE = "Europe/Copenhagen"
    LANGUAGES = ("da", "en")

    # Cookies. SESSION_COOKIE_SECURE None = secure when PUBLIC_BASE_URL is https.
    SESSION_COOKIE_SECURE: bool | None = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "nl_session"
    PERMANENT_SESSION_LIFETIME = 8 * 3600
    # A staff session also ends after this long without a request to a staff page.
    STAFF_IDLE_MINUTES = 60
    # Staff sign-in by OpenID Connect, e.g. Microsoft Entra ID (README: "Single sign-on").
    # Off while OIDC_ISSUER is unset. The lists may come from the environment as
    # comma-separated text (NEWSLETTERS_OIDC_ADMIN_ROLES="Nyhedsbreve.Admin,...").
    OIDC_ISSUER: str | None = None
    OIDC_CLIENT_ID: str | None = None
    OIDC_CLIENT_SECRET: str | None = None
    # The ID token's claim whose values give the role: "roles" (app roles) or "groups".
    OIDC_ROLES_CLAIM = "roles"
    OIDC_ADMIN_ROLES: tuple[str, ...] | str = ()
    OIDC_EDITOR_ROLES: tuple[str, ...] | str = ()
    # Shown on the button: "Log ind med <name>" ("Log ind med SSO" when empty).
    OIDC_PROVIDER_NAME = ""
    OIDC_TIMEOUT_SECONDS = 10
    # An invitation to sign in by SSO lets its address in for this many days; after
    # that the sign-in is refused until an administrator invites the address again.
    STAFF_INVITATION_MAX_AGE_DAYS = 7
    # False: the password form is refused; staff sign in by OIDC only.
    LOCAL_LOGIN_ENABLED = True
    WTF_CSRF_TIME_LIMIT = 4 * 3600
    # Path to the dkfds distribution (npm install); served under /assets/dkfds.
    DKFDS_DIST: str | None = None
