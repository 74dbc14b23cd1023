"""Email address rules: which addresses an account may give, how they are kept and compared.

A practical subset of RFC 5321/5322, checked by `email-validator` without DNS look-ups:

- exactly one `@`; no display name (`Ann <ann@example.com>`), no quoted local part, no IP literal;
- the local part a dot-atom of ASCII characters (no SMTPUTF8: not every mail server takes it), at
  most 64 octets;
- the domain made of valid labels with at least one dot; special-use names that cannot receive
  mail from the internet (`localhost`, `.local`, `.test`, `.invalid`, `.onion`, ...) are refused;
  an internationalized domain is kept in its ASCII (IDNA) form, `bücher.example` as
  `xn--bcher-kva.example`;
- at most 254 octets in all.

The address is kept as typed in its local part (some servers treat `Ann` and `ann` as different
mailboxes, so mail goes to the spelling given) with the domain lowercased; two addresses are the
same account's if they are equal ignoring case (`EmailAddress.key`), so `Ann@Example.com` and
`ann@example.com` cannot belong to two accounts. Surrounding whitespace is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

MAX_LOCAL_PART_OCTETS = 64
MAX_ADDRESS_OCTETS = 254


class InvalidEmailAddress(ValueError):
    """The address breaks a rule: `reason` says which, in words fit for whoever typed it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A valid address: `address` is what mail is sent to and what is stored."""

    address: str

    @property
    def key(self) -> str:
        """What uniqueness is decided on: the whole address ignoring case (it is ASCII)."""
        return self.address.lower()

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def __str__(self) -> str:
        return self.address


def parse_email_address(text: str) -> EmailAddress:
    """The address in `text`, normalized; raises InvalidEmailAddress saying why it is refused."""
    candidate = text.strip()
    if not candidate:
        raise InvalidEmailAddress("an email address is required")
    if candidate.count("@") != 1:
        # Said here so that the reason is the same whatever else is wrong with the text.
        raise InvalidEmailAddress("an email address has exactly one @")
    try:
        valid = validate_email(
            candidate,
            check_deliverability=False,  # no DNS: a request never waits on a resolver
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            globally_deliverable=True,
            strict=True,  # also the 64-octet limit of the local part
        )
    except EmailNotValidError as error:
        raise InvalidEmailAddress(_reason(str(error))) from None
    address = valid.ascii_email
    if address is None:  # not reached with allow_smtputf8=False; kept so a change of option cannot slip
        raise InvalidEmailAddress("the part before the @ must be ASCII")
    if len(address.encode()) > MAX_ADDRESS_OCTETS:
        raise InvalidEmailAddress(f"an email address has at most {MAX_ADDRESS_OCTETS} characters")
    return EmailAddress(address)


def _reason(message: str) -> str:
    """email-validator's sentences as one reason: first letter lowercased, no final period."""
    sentences = message.strip().rstrip(".").split(". ")
    return ": ".join(sentence[:1].lower() + sentence[1:] for sentence in sentences)
