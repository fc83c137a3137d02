"""The shortest way through: the subscribe page lists KL's four newsletters, and its
confirmation mail reaches a strict SMTP server on loopback."""

from tests.conftest import deliver
from tests.support.flows import process_intake
from tests.support.pages import csrf_token


def test_subscribe_page_lists_the_four_newsletters(client):
    page = client.get("/")
    assert page.status_code == 200
    for slug in ("bestyrelse", "kl-nyheder", "momentum", "danske-kommuner"):
        assert f'value="{slug}"'.encode() in page.data


def test_mail_reaches_strict_smtp_server(mail_app, smtp_server):
    client = mail_app.test_client()
    token = csrf_token(client.get("/").data)
    response = client.post(
        "/", data={"csrf_token": token, "email": "a@example.dk", "newsletters": ["momentum"]}
    )
    assert response.status_code == 303
    process_intake(mail_app)
    stats = deliver(mail_app)
    assert stats.sent == 1, stats
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_to == "a@example.dk"
