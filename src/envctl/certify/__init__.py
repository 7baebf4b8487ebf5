"""The certify stage (host side): run the smoke runner inside an env and keep its Certificate."""

from envctl.certify.certificate import Certificate, CertificateError, Certification, Result, read_certificate

__all__ = ["Certificate", "CertificateError", "Certification", "Result", "read_certificate"]
