"""Reason texts and call scripts in en/ru/uk/he: plural and gender forms at the edge numbers, "today", right-to-left
with numbers kept left-to-right, a script for every playbook pair in every language that names the customer's facts,
texts read from the data files, one fact stated once, and the language rule of queue and script."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import yaml

from churnsense.insights.playbook import language_code, service_language
from churnsense.insights.reason_texts import reason_texts, typical_facts
from churnsense.insights.scripts import DEFAULT, offer_terms, render_script, script_entry
from churnsense.insights.wording import (
    FSI,
    LRI,
    PDI,
    TEXTS_DIR,
    LanguageFileError,
    available_languages,
    condition_facts,
    load_language,
    template_fields,
    variants_of,
)
from helpers import default_insights_config

LANGS = ("en", "ru", "uk", "he")
CFG = default_insights_config()
# the numbers of outages / days of the edge cases, and the words each language must use for them
OUTAGES = {
    "en": {1: "1 outage ", 2: "2 outages", 5: "5 outages", 21: "21 outages"},
    "ru": {1: "1 сбой ", 2: "2 сбоя", 5: "5 сбоев", 21: "21 сбой "},
    "uk": {1: "1 збій ", 2: "2 збої", 5: "5 збоїв", 21: "21 збій "},
    "he": {1: "תקלה אחת", 2: "שתי תקלות", 5: f"{LRI}5{PDI} תקלות", 21: f"{LRI}21{PDI} תקלות"},
}
TODAY = {"en": "today", "ru": "сегодня", "uk": "сьогодні", "he": "היום"}
YESTERDAY = {"en": "yesterday", "ru": "вчера", "uk": "учора", "he": "אתמול"}
LATE = {
    "en": {1: "1 late payment ", 21: "21 late payments"},
    "ru": {2: "2 просроченных платежа", 21: "21 просроченный"},
    "uk": {2: "2 прострочені платежі", 5: "5 прострочених платежів"},
    "he": {1: "תשלום אחד באיחור", 2: "שני תשלומים באיחור"},
}  # Hebrew: masculine noun -> אחד / שני
MONTHS = {
    "en": {2: "2 months"},
    "ru": {2: "2 месяца", 5: "5 месяцев"},
    "uk": {2: "2 місяці", 5: "5 місяців"},
    "he": {2: "חודשיים", 1: "חודש אחד"},
}  # Hebrew dual form
RICH = {  # one customer with every fact the scripts can quote
    "outage_n_30d": 3.0,
    "outage_n_90d": 4.0,
    "support_contact_n_30d": 2.0,
    "support_contact_n_90d": 3.0,
    "support_contact_days_since": 3.4,
    "price_change_last": 0.23,
    "price_change_days_since": 18.6,
    "late_payment_n_90d": 2.0,
    "late_payment_days_since": 12.0,
    "payment_days_since": 40.0,
    "usage_drop_pct": 41.0,
    "usage_days_since": 2.0,
    "contract": "month_to_month",
    "tenure_months": 7.4,
    "neg_feedback_n_90d": 1.0,
    "feedback_days_since": 4.2,
    "feedback_language": "ru",
    "feedback_topic": "billing",
    "plan": "basic",
    "n_lines": 2.0,
    "plan_change_last": -1.0,
    "plan_change_days_since": 30.0,
    "monthly_charge": 80.0,
    "payment_method": "e_check",
    "region": "north",
}


def words(code: str, facts: dict, lang: str) -> list[str]:
    return reason_texts([code], facts, [load_language(lang)], 3)[1][lang]


@pytest.mark.parametrize("lang", LANGS)
def test_plural_forms_at_the_edge_numbers(lang):
    for n, expected in OUTAGES[lang].items():
        (text,) = words("outages", {"outage_n_30d": float(n)}, lang)
        assert expected in text + " ", (n, text)
    for n, expected in LATE[lang].items():
        assert expected in words("late_payments", {"late_payment_n_90d": float(n)}, lang)[0] + " "
    for n, expected in MONTHS[lang].items():
        assert expected in words("tenure", {"tenure_months": float(n)}, lang)[0]
    assert "1 late payments" not in words("late_payments", {"late_payment_n_90d": 1.0}, "en")[0]


@pytest.mark.parametrize("lang", LANGS)
def test_scripts_at_the_edge_numbers(lang):
    language = load_language(lang)
    terms = offer_terms("outages", "call", CFG["scripts"])
    for n, expected in OUTAGES[lang].items():
        script = render_script("outages", "call", {"outage_n_30d": float(n)}, language, terms).text
        opening = script.split("\n")[0]
        assert expected.strip() in opening, (n, opening)
    price = {"price_change_last": 0.12, "price_change_days_since": 0.0}
    script = render_script(
        "price_increase", "discount", price, language, offer_terms("price_increase", "discount", CFG["scripts"])
    ).text
    assert TODAY[lang] in script.split("\n")[0]
    if language.rtl:  # every digit of the script reads left to right
        assert not re.search(r"\d", re.sub(f"{LRI}[^{PDI}]*{PDI}", "", script))


@pytest.mark.parametrize("lang", LANGS)
def test_days_ago_reads_today_and_counts_whole_days(lang):
    today = words("price_increase", {"price_change_last": 0.1, "price_change_days_since": 0.0}, lang)[0]
    assert TODAY[lang] in today and not re.search(r"\b0\b", today)
    hours_before = words("price_increase", {"price_change_last": 0.1, "price_change_days_since": 0.3}, lang)[0]
    assert YESTERDAY[lang] in hours_before  # an event 7 hours before the scoring date was yesterday


def test_right_to_left_keeps_numbers_left_to_right():
    he = load_language("he")
    assert he.rtl and not load_language("ru").rtl
    text = words("price_increase", {"price_change_last": 0.23, "price_change_days_since": 18.6}, "he")[0]
    assert f"{LRI}23%{PDI}" in text and f"{LRI}19{PDI}" in text
    assert not re.search(r"\d", re.sub(f"{LRI}[^{PDI}]*{PDI}", "", text))  # every digit is isolated
    outages = words("outages", {"outage_n_30d": 5.0}, "he")[0]
    assert f"ב-{LRI}30{PDI}" in outages  # digits written in the file are isolated too, the prefix stays outside
    latin = words("attr:region", {"region": "zone_7b"}, "he")[0]  # an unnamed code: isolated Latin text
    assert f"{FSI}zone_7b{PDI}" in latin.replace(f"{LRI}7{PDI}", "7")
    assert LRI not in words("outages", {"outage_n_30d": 5.0}, "en")[0]  # left-to-right text is left alone


def playbook_pairs() -> list[tuple[str, str]]:
    pairs = {(code, entry["action"]) for code, entry in CFG["playbook"].items()}
    pairs |= {(DEFAULT, action) for action in CFG["actions"]}
    return sorted(pairs)


@pytest.mark.parametrize("lang", LANGS)
def test_every_playbook_pair_has_a_script_that_names_the_customers_facts(lang):
    language = load_language(lang)
    typical = typical_facts({"monthly_charge": {"median": 50.0, "scale": 20.0, "log": False}}, 0.5)
    facts = {**typical, **RICH}
    for reason, action in playbook_pairs():
        own_script = (language.section("scripts").get(reason) or {}).get(action)
        assert own_script is not None and script_entry(reason, action, language) == own_script, (reason, action)
        terms = offer_terms(reason, action, CFG["scripts"])
        own = words(reason, facts, lang) if reason != DEFAULT else []
        reasons = "; ".join(reason_texts(["outages", "tenure"], facts, [language], 3)[1][lang])
        script = render_script(
            reason, action, facts, language, terms, own[0] if own else "", reasons if reason == DEFAULT else ""
        )
        lines = script.text.split("\n")
        assert len(lines) == 5 + (reason == DEFAULT), (reason, action, script.text)  # opening offer 2x obj close
        assert "{" not in script.text and "}" not in script.text
        assert script.quoted, (reason, action)  # the opening names at least one of the customer's facts
        other_terms = {k: v * 3 for k, v in terms.items()}  # the offer quotes its terms (from config)
        again = render_script(reason, action, facts, language, other_terms, own[0] if own else "")
        assert again.text.split("\n")[-4] != script.text.split("\n")[-4] or not terms, (reason, action)


@pytest.mark.parametrize("lang", LANGS)
def test_script_without_facts_falls_back_to_the_actions_default_opening(lang):
    language = load_language(lang)
    for reason, action in playbook_pairs():
        text = render_script(reason, action, {}, language, offer_terms(reason, action, CFG["scripts"])).text
        assert text and "{" not in text


def test_language_files_share_conditions_and_placeholders():
    """Every file words the same reasons and scripts under the same `when` lists with the same facts, so the
    reasons shown never depend on the agent's language."""
    en = load_language("en")
    assert set(available_languages()) >= set(LANGS)

    def shape(entry) -> list[tuple]:
        return [
            (tuple(v.get("when") or ()), tuple(sorted({f for f, _ in template_fields(v.get("text", ""))})))
            for v in variants_of(entry)
        ]

    for lang in LANGS[1:]:
        other = load_language(lang)
        assert other.section("reasons").keys() == en.section("reasons").keys(), lang
        for code, entry in en.section("reasons").items():
            assert shape(other.section("reasons")[code]) == shape(entry), (lang, code)
        for kind, entry in en.section("auto").items():
            assert shape(other.section("auto")[kind]) == shape(entry), (lang, kind)
        for reason, by_action in en.section("scripts").items():
            for action, script in by_action.items():
                theirs = other.section("scripts")[reason][action]
                assert shape(theirs["opening"]) == shape(script["opening"]), (lang, reason, action)
                assert len(theirs["objections"]) == len(script["objections"]) == 2
        nouns = {
            s
            for entry in en.section("reasons").values()
            for v in variants_of(entry)
            for _, s in template_fields(v["text"])
            if s and s not in ("percent", "ratio", "money", "number")
        }
        assert nouns <= set(other.section("nouns")), (lang, nouns - set(other.section("nouns")))
        for v in variants_of(other.section("reasons")["outages"]):
            assert condition_facts(v["when"]) == ["outage_n_30d"] or condition_facts(v["when"]) == ["outage_n_90d"]


def test_one_fact_is_stated_once_per_customer():
    facts = {"tenure_months": 2.2, "contract": "month_to_month"}
    kept, texts = reason_texts(["tenure", "short_contract"], facts, [load_language("en")], 3)
    assert texts["en"] == ["new customer: with us for 2 months", "month-to-month contract: can leave any day"]
    kept, texts = reason_texts(["short_contract", "tenure"], facts, [load_language("en")], 3)
    assert kept == ["short_contract", "tenure"] and sum("2 months" in t for t in texts["en"]) == 1
    kept, texts = reason_texts(["short_contract"], facts, [load_language("en")], 3)
    assert texts["en"] == ["month-to-month contract after only 2 months: can leave any day"]


def test_reasons_are_worded_only_when_true():
    en = load_language("en")
    typical = typical_facts(
        {
            "satisfaction": {"median": 3.0, "scale": 2.0, "log": False},
            "monthly_charge": {"median": 50.0, "scale": 20.0, "log": False},
        },
        0.5,
    )
    near = {**typical, "satisfaction": 3.5}
    assert reason_texts(["attr:satisfaction"], near, [en], 3)[0] == []  # near its typical value: noise, no reason
    assert reason_texts(["attr:satisfaction"], {**typical, "satisfaction": 1.0}, [en], 3)[1]["en"] == [
        "satisfaction 1: lower than typical (3)"
    ]
    # a monthly charge without any price change is worded as a high charge, never as "the price rose"
    assert reason_texts(["price_increase"], {**typical, "monthly_charge": 90.0}, [en], 3)[1]["en"] == [
        "high monthly charge: 90.00 (typical 50.00)"
    ]
    assert reason_texts(["price_increase"], {**typical, "monthly_charge": 55.0}, [en], 3)[0] == []
    assert reason_texts(["usage_decline"], {"usage_drop_pct": -30.0}, [en], 3)[0] == []  # usage rose
    # an automatic code with its own entry says only what the entry says; others get the generic words
    assert reason_texts(["attr:payment_method"], {"payment_method": "card_auto"}, [en], 3)[0] == []
    assert reason_texts(["attr:payment_method"], {"payment_method": "e_check"}, [en], 3)[1]["en"] == [
        "pays by e-check: no automatic payment, a bill is easy to miss"
    ]
    assert reason_texts(["attr:region"], {"region": "north"}, [en], 3)[1]["en"] == [
        "region “north”: linked to a higher churn risk"
    ]
    assert reason_texts(["negative_feedback"], {"neg_feedback_n_90d": 0.0, "feedback_n_90d": 4.0}, [en], 3)[0] == []


def test_texts_come_from_the_data_files(tmp_path):
    for lang in LANGS:
        shutil.copy(TEXTS_DIR / f"{lang}.yaml", tmp_path / f"{lang}.yaml")
    data = yaml.safe_load((tmp_path / "ru.yaml").read_text(encoding="utf-8"))
    data["nouns"]["outage"] = {"one": "{n} авария", "few": "{n} аварии", "many": "{n} аварий", "other": "{n} аварии"}
    (tmp_path / "ru.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    ru = load_language("ru", tmp_path)
    assert reason_texts(["outages"], {"outage_n_30d": 5.0}, [ru], 3)[1]["ru"] == ["5 аварий за последние 30 дней"]
    with pytest.raises(LanguageFileError, match=r"fr\.yaml not found"):
        load_language("fr", tmp_path)


def test_queue_and_script_language_rule():
    assert [language_code(v) for v in ("RU-ru", "he_IL", "Hebrew", "iw", "", None, "xx-yy")] == [
        "ru",
        "he",
        "he",
        "he",
        None,
        None,
        "xx",
    ]
    facts = pd.DataFrame(
        {"language": ["ru", None, "fr", None, "uk-UA"], "feedback_language": ["he", "he", "uk", None, "ru"]}
    )
    lang = service_language(facts, ["language", "feedback_language"], LANGS, "en")
    assert lang.tolist() == ["ru", "he", "uk", "en", "uk"]
