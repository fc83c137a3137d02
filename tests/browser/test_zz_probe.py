import pytest
from tests.browser.test_subscriber_pages import fill_subscribe_form, submit
pytestmark = pytest.mark.browser

def test_probe(page, live_server, smtp_server):
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto("/")
    submit(page)
    page.locator("#subscribe-heading").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/screens/x-errors.png")
    page.goto("/")
    fill_subscribe_form(page, email="p@kommune.dk", name="P", slugs=("momentum","kl-nyheder"))
    submit(page)
    page.screenshot(path="/tmp/screens/x-subscribed.png")
    [m] = smtp_server.wait_for(1)
    page.goto(m.link("/confirm/")); page.screenshot(path="/tmp/screens/x-confirm.png")
    submit(page, "main form button"); page.screenshot(path="/tmp/screens/x-confirmed.png")
    page.goto("/manage"); page.fill("#email", "p@kommune.dk"); submit(page)
    link = smtp_server.wait_for(2)[1].link("/manage/")
    page.goto(link); page.uncheck("#newsletters-2"); submit(page, "main form button")
    page.screenshot(path="/tmp/screens/x-manage.png", full_page=True)
    page.goto(link + "/delete"); submit(page, "main form button"); page.screenshot(path="/tmp/screens/x-delete.png")
    page.goto("/nope"); page.screenshot(path="/tmp/screens/x-404.png")
    page.goto("/?lang=en"); page.keyboard.press("Tab"); page.wait_for_timeout(400); page.screenshot(path="/tmp/screens/x-skip.png", clip={"x":0,"y":0,"width":1100,"height":300})
    page.keyboard.press("Tab"); page.screenshot(path="/tmp/screens/x-focus-title.png", clip={"x":0,"y":0,"width":1100,"height":200})
    page.focus("#email"); page.screenshot(path="/tmp/screens/x-focus-email.png")
