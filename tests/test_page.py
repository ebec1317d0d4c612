"""The page at ``GET /``, driven in a real headless browser: a person picks a user, or types a few movies.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``; ``.ci/run``
installs them) and Selenium (the test extra); skipped with the reason where they are absent.
"""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    if not (CHROMIUM and DRIVER):
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(trained):
    from tfrs_pipeline.server import make_server

    server = make_server(trained.path.parent, port=0)
    server.start()
    yield server.url
    server.stop()


def _wait(browser, condition, seconds: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, poll_frequency=0.1).until(lambda _: condition())


def test_a_user_gets_recommendations_with_titles_ratings_and_why_then_similar_movies(browser, page, trained):
    from selenium.webdriver.common.by import By

    from tfrs_pipeline.recommender import Recommender

    browser.get(page + "/")
    _wait(browser, lambda: "version" in browser.find_element(By.ID, "model").text)
    examples = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#examples button"))
    assert [e.text for e in examples] == Recommender.load(trained.path).known_users()[:5]  # ids that exist
    browser.find_element(By.ID, "user-id").send_keys("5")
    browser.find_element(By.ID, "recommend-user").click()
    rows = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#results li"))
    assert len(rows) == 10
    assert all(row.find_element(By.CSS_SELECTOR, ".title").text for row in rows)
    # plain words: a predicted rating and a match, the first movie the best match
    assert "predicted rating" in rows[0].text and "match 100%" in rows[0].text and "ranker" not in rows[0].text
    # what the user rated highest, beside the list, best first
    rated = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#rated li"))
    expected = Recommender.load(trained.path).rated_movies("5", k=10)
    assert len(rated) == len(expected) and all(r.text.startswith(t) and r.text.endswith(f"rated {x:g}")
                                               for r, t, x in zip(rated, expected["title"], expected["rating"]))
    _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#results li .why").text)  # the explanations
    assert all(w.text == "" or w.text.startswith("because they rated ")
               for w in browser.find_elements(By.CSS_SELECTOR, "#results li .why"))
    rows[0].find_element(By.CSS_SELECTOR, ".title").click()
    similar = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#similar li"))
    assert len(similar) == 8 and "similarity" in similar[0].text
    examples[1].click()  # another user: the panels of the first one are cleared
    _wait(browser, lambda: browser.find_element(By.ID, "user-id").get_attribute("value") == examples[1].text)
    _wait(browser, lambda: not browser.find_elements(By.CSS_SELECTOR, "#similar li"))
    _wait(browser, lambda: f"user {examples[1].text}" in browser.find_element(By.ID, "rated-heading").text)


def test_someone_the_model_never_saw_types_a_few_movies_and_gets_recommendations(browser, page, trained):
    from selenium.webdriver.common.by import By

    from tfrs_pipeline.recommender import Recommender

    catalog = Recommender.load(trained.path).catalog
    browser.get(page + "/")
    for movie_id in ("7", "12"):
        title = catalog.loc[catalog["movie_id"] == movie_id, "title"].iloc[0]
        browser.find_element(By.ID, "movie-search").send_keys(title[:-7])  # the title without its year
        suggestion = _wait(browser, lambda movie=movie_id: [s for s in browser.find_elements(
            By.CSS_SELECTOR, "#suggestions li") if s.get_attribute("data-movie-id") == movie])
        suggestion[0].click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#liked .chip")) == 2
    browser.find_element(By.ID, "recommend-history").click()
    rows = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#results li"))
    assert len(rows) == 10 and "someone who liked" in browser.find_element(By.ID, "status").text
    assert not {"7", "12"} & {row.get_attribute("data-movie-id") for row in rows}  # never what they gave
    # what they picked, beside the list; explanations only where they hold: a row "similar to" a picked movie
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rated li")) == 2
    picked = set(Recommender.load(trained.path).similar_items(["7", "12"], k=50)["movie_id"])
    _wait(browser, lambda: any(r.find_element(By.CSS_SELECTOR, ".why").text for r in rows), seconds=10)
    for row in rows:
        why = row.find_element(By.CSS_SELECTOR, ".why").text
        assert "because you liked" not in why
        assert (why.startswith("similar to ") and row.get_attribute("data-movie-id") in picked) or why == ""
