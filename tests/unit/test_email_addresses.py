"""Email address rules: what is accepted, how it is normalized, and the reason for each refusal."""

from __future__ import annotations

import pytest

from mail.addresses import MAX_ADDRESS_OCTETS, InvalidEmailAddress, parse_email_address


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        # The local part is kept as typed (mail goes to that spelling); the domain is lowercased.
        ("Ann.Lee@Example.COM", "Ann.Lee@example.com"),
        ("  ann@example.com\n", "ann@example.com"),
        # Every dot-atom character is allowed in the local part.
        ("a+tag/x=y!#$%&'*^_`{|}~-@sub.example.org", "a+tag/x=y!#$%&'*^_`{|}~-@sub.example.org"),
        # Internationalized domains are kept in their ASCII (IDNA) form, either way they are typed.
        ("ann@Bücher.example", "ann@xn--bcher-kva.example"),
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ],
)
def test_valid_addresses_are_normalized_for_storage(typed: str, stored: str) -> None:
    assert parse_email_address(typed).address == stored


def test_uniqueness_ignores_case_of_the_whole_address() -> None:
    typed = parse_email_address("Ann@Example.com")
    other = parse_email_address("aNN@EXAMPLE.COM")
    assert typed.address != other.address  # each is sent to as typed...
    assert typed.key == other.key == "ann@example.com"  # ...but they are one account's address
    assert (
        parse_email_address("ann@bücher.example").key == parse_email_address("ANN@xn--BCHER-kva.example").key
    )


def test_parts() -> None:
    address = parse_email_address("Ann@Example.com")
    assert (address.local_part, address.domain, str(address)) == ("Ann", "example.com", "Ann@example.com")


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "an email address is required"),
        ("   ", "an email address is required"),
        ("ann.example.com", "an email address has exactly one @"),
        ("ann@@example.com", "an email address has exactly one @"),
        ("ann@b@example.com", "an email address has exactly one @"),
        ('"ann lee"@example.com', "quoting the part before the @-sign is not allowed here"),
        ("Ann <ann@example.com>", "a display name"),
        ("ann@[192.0.2.1]", "a bracketed IP address after the @-sign is not allowed here"),
        ("ann..lee@example.com", "two periods in a row"),
        (".ann@example.com", "cannot start with a period"),
        ("ann.@example.com", "period immediately before the @-sign"),
        ("ann lee@example.com", "invalid characters before the @-sign"),
        ("änn@example.com", "internationalized characters before the @-sign are not supported"),
        ("a" * 65 + "@example.com", "too long before the @-sign"),
        ("ann@localhost", "it should have a period"),
        ("ann@example", "it should have a period"),
        ("ann@mail.localhost", "special-use or reserved name"),
        ("ann@printer.local", "special-use or reserved name"),
        ("ann@host.test", "special-use or reserved name"),
        ("ann@x.invalid", "special-use or reserved name"),
        ("ann@example.123", "not within a valid top-level domain"),
        ("ann@-example.com", "hyphen"),
        ("ann@exam_ple.com", "invalid characters"),
        ("ann@example.com.", "cannot end with a period"),
        ("ann@" + "b" * 64 + ".com", "periods cannot be separated by so many characters"),
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(typed: str, reason: str) -> None:
    with pytest.raises(InvalidEmailAddress) as refused:
        parse_email_address(typed)
    assert reason in refused.value.reason
    assert str(refused.value) == refused.value.reason
    assert not refused.value.reason.endswith(".")


def test_total_length_is_at_most_254_octets() -> None:
    local = "a" * 64
    # 64 + 1 + 189 = 254 fits; one more octet of domain does not.
    domain_254 = ".".join(["b" * 63, "c" * 63, "d" * 57, "com"])
    assert len(f"{local}@{domain_254}") == MAX_ADDRESS_OCTETS
    assert parse_email_address(f"{local}@{domain_254}").address == f"{local}@{domain_254}"
    with pytest.raises(InvalidEmailAddress, match="too long"):
        parse_email_address(f"{local}@{domain_254.replace('ddd', 'dddd', 1)}")


def test_an_idn_domain_is_measured_in_its_ascii_form() -> None:
    label = "日本語のドメイン名"  # 9 characters, 30 octets as xn--...
    fits = parse_email_address("a" * 64 + "@" + ".".join([label] * 6) + ".com")
    assert len(fits.address) == MAX_ADDRESS_OCTETS
    too_long = "a" * 64 + "@" + ".".join([label] * 7) + ".com"
    assert len(too_long) < MAX_ADDRESS_OCTETS
    with pytest.raises(InvalidEmailAddress, match="too long"):
        parse_email_address(too_long)
