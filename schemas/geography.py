"""Posts, landing sites, corridors and traveller mixes of the region, for the simulator.

Real crossing points; traffic weights are rough orders of magnitude for a
realistic mix, not official statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PostInfo:
    """A border crossing point."""

    post_id: str
    name: str
    post_type: str  # LAND, SEA, AIR
    country: str
    biometric_rate: float  # share of crossings with a face capture (e-gates at airports)
    latitude: float = 0.0  # WGS84, for travel-time checks between posts
    longitude: float = 0.0


POSTS: dict[str, PostInfo] = {p.post_id: p for p in [
    PostInfo("ID-CGK", "Soekarno-Hatta International Airport", "AIR", "IDN", 0.9, -6.13, 106.66),
    PostInfo("ID-DPS", "I Gusti Ngurah Rai International Airport", "AIR", "IDN", 0.9, -8.75, 115.17),
    PostInfo("ID-KNO", "Kualanamu International Airport, Medan", "AIR", "IDN", 0.8, 3.64, 98.88),
    PostInfo("ID-BTH", "Batam Centre International Ferry Terminal", "SEA", "IDN", 0.6, 1.13, 104.05),
    PostInfo("ID-TPI", "Sri Bintan Pura Ferry Terminal, Tanjung Pinang", "SEA", "IDN", 0.5, 0.92, 104.45),
    PostInfo("ID-TBK", "Tanjung Balai Karimun Port", "SEA", "IDN", 0.4, 1.0, 103.43),
    PostInfo("ID-DUM", "Dumai Port", "SEA", "IDN", 0.4, 1.69, 101.45),
    PostInfo("ID-ETK", "PLBN Entikong", "LAND", "IDN", 0.5, 0.98, 110.38),
    PostInfo("ID-ARU", "PLBN Aruk, Sambas", "LAND", "IDN", 0.4, 1.88, 109.64),
    PostInfo("ID-NNK", "Tunon Taka Port, Nunukan", "SEA", "IDN", 0.4, 4.14, 117.67),
    PostInfo("MY-KUL", "Kuala Lumpur International Airport", "AIR", "MYS", 0.9, 2.74, 101.7),
    PostInfo("MY-JBC", "Johor Bahru CIQ (Bangunan Sultan Iskandar)", "LAND", "MYS", 0.6, 1.46, 103.76),
    PostInfo("MY-STL", "Stulang Laut Ferry Terminal, Johor", "SEA", "MYS", 0.5, 1.47, 103.78),
    PostInfo("MY-MLK", "Melaka Ferry Terminal", "SEA", "MYS", 0.5, 2.19, 102.25),
    PostInfo("MY-TBD", "Tebedu ICQS, Sarawak", "LAND", "MYS", 0.5, 1.02, 110.36),
    PostInfo("MY-BRH", "Biawak ICQS, Sarawak", "LAND", "MYS", 0.4, 1.92, 109.63),
    PostInfo("MY-TWU", "Tawau Ferry Terminal, Sabah", "SEA", "MYS", 0.5, 4.24, 117.88),
    PostInfo("SG-SIN", "Changi Airport", "AIR", "SGP", 0.95, 1.36, 103.99),
    PostInfo("SG-WDL", "Woodlands Checkpoint", "LAND", "SGP", 0.8, 1.45, 103.77),
    PostInfo("SG-HBF", "HarbourFront Ferry Terminal", "SEA", "SGP", 0.8, 1.26, 103.82),
    PostInfo("SG-TNM", "Tanah Merah Ferry Terminal", "SEA", "SGP", 0.8, 1.32, 103.99),
    PostInfo("TH-BKK", "Suvarnabhumi Airport", "AIR", "THA", 0.9, 13.69, 100.75),
    PostInfo("KH-PNH", "Phnom Penh International Airport", "AIR", "KHM", 0.7, 11.55, 104.84),
    PostInfo("KH-PPT", "Poipet International Border Checkpoint", "LAND", "KHM", 0.3, 13.66, 102.56),
]}


def distance_km(a: PostInfo, b: PostInfo) -> float:
    """Great-circle distance between two posts."""
    p1, p2 = math.radians(a.latitude), math.radians(b.latitude)
    dp, dl = p2 - p1, math.radians(b.longitude - a.longitude)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class Corridor:
    """A leg between two posts: exit at ``exit_post``, entry at ``entry_post``."""

    exit_post: str
    entry_post: str
    carrier_mode: str
    weight: float


# Legs with relative daily volumes. Both directions are generated from each leg.
CORRIDORS: list[Corridor] = [
    Corridor("ID-BTH", "SG-HBF", "VESSEL", 10), Corridor("ID-BTH", "SG-TNM", "VESSEL", 4),
    Corridor("ID-TPI", "SG-TNM", "VESSEL", 3), Corridor("ID-TBK", "SG-HBF", "VESSEL", 1.5),
    Corridor("ID-TBK", "MY-STL", "VESSEL", 1.5), Corridor("ID-DUM", "MY-MLK", "VESSEL", 2),
    Corridor("ID-CGK", "MY-KUL", "FLIGHT", 8), Corridor("ID-CGK", "SG-SIN", "FLIGHT", 9),
    Corridor("ID-DPS", "SG-SIN", "FLIGHT", 5), Corridor("ID-DPS", "MY-KUL", "FLIGHT", 4),
    Corridor("ID-KNO", "MY-KUL", "FLIGHT", 4), Corridor("ID-CGK", "TH-BKK", "FLIGHT", 2),
    Corridor("ID-ETK", "MY-TBD", "VEHICLE", 3), Corridor("ID-ARU", "MY-BRH", "VEHICLE", 1),
    Corridor("ID-NNK", "MY-TWU", "VESSEL", 2.5), Corridor("MY-JBC", "SG-WDL", "VEHICLE", 20),
    Corridor("MY-KUL", "SG-SIN", "FLIGHT", 4), Corridor("SG-SIN", "TH-BKK", "FLIGHT", 4),
    Corridor("TH-BKK", "KH-PNH", "FLIGHT", 1), Corridor("SG-SIN", "KH-PNH", "FLIGHT", 0.7),
    Corridor("MY-KUL", "KH-PNH", "FLIGHT", 0.6), Corridor("MY-KUL", "TH-BKK", "FLIGHT", 2),
]

# Nationality mix of ordinary travellers per country of the exit post.
NATIONALITY_MIX: dict[str, dict[str, float]] = {
    "IDN": {"IDN": 0.78, "MYS": 0.05, "SGP": 0.06, "AUS": 0.04, "CHN": 0.03, "IND": 0.02, "NLD": 0.02},
    "MYS": {"MYS": 0.65, "SGP": 0.12, "IDN": 0.10, "CHN": 0.05, "IND": 0.03, "BGD": 0.03, "PHL": 0.02},
    "SGP": {"SGP": 0.45, "MYS": 0.25, "IDN": 0.10, "CHN": 0.08, "IND": 0.06, "PHL": 0.03, "AUS": 0.03},
    "THA": {"THA": 0.55, "MYS": 0.1, "SGP": 0.1, "CHN": 0.15, "IDN": 0.05, "KHM": 0.05},
    "KHM": {"KHM": 0.6, "THA": 0.15, "CHN": 0.15, "VNM": 0.1},
}

# Hourly and weekday rhythms (relative weights; index 0 = 00:00 UTC+7, Monday).
HOURLY = [0.2, 0.1, 0.1, 0.1, 0.3, 0.8, 1.6, 2.2, 2.0, 1.7, 1.5, 1.4,
          1.4, 1.4, 1.5, 1.6, 1.8, 2.0, 1.9, 1.6, 1.2, 0.9, 0.6, 0.4]
WEEKDAY = [0.9, 0.85, 0.85, 0.9, 1.15, 1.3, 1.1]
LOCAL_OFFSET_H = 7  # Western Indonesia / Indochina time; SGP/MYS are +8, close enough for rhythms

# Known exploitation destinations of regional routes (DOMAIN.md).
SCAM_COMPOUND_STATES = ("KHM", "MMR", "LAO")
MIDDLE_EAST_STATES = ("SAU", "ARE", "QAT", "OMN", "KWT", "JOR")


@dataclass(frozen=True)
class LandingSite:
    """A maritime landing site."""

    site_id: str
    name: str
    province: str
    latitude: float
    longitude: float


LANDING_SITES = [
    LandingSite("ID-AC-LSM", "Lhokseumawe", "Aceh", 5.18, 97.15),
    LandingSite("ID-AC-PDE", "Pidie", "Aceh", 5.38, 95.95),
    LandingSite("ID-AC-SBG", "Sabang", "Aceh", 5.89, 95.32),
    LandingSite("ID-SU-BLW", "Belawan, Medan", "Sumatera Utara", 3.78, 98.69),
    LandingSite("ID-RI-DUM", "Dumai", "Riau", 1.68, 101.45),
    LandingSite("ID-RI-BKS", "Bengkalis", "Riau", 1.47, 102.11),
]

# Synthetic name pools (common given names and family names; combinations are random).
GIVEN_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "IDN": (["Agus", "Budi", "Wahyu", "Rizky", "Dedi", "Eko", "Hendra", "Andi", "Yusuf", "Fajar"],
            ["Siti", "Dewi", "Rina", "Putri", "Nur", "Sri", "Wulan", "Ayu", "Indah", "Lestari"]),
    "MYS": (["Muhammad", "Ahmad", "Hafiz", "Amir", "Faizal", "Azlan", "Rahman", "Syafiq"],
            ["Nur", "Aisyah", "Siti", "Farah", "Aina", "Hidayah", "Zulaikha", "Amira"]),
    "SGP": (["Wei Ming", "Jun Hao", "Kumar", "Ravi", "Daniel", "Ethan", "Hafiz", "Jia Wei"],
            ["Wei Ling", "Hui Min", "Priya", "Nurul", "Rachel", "Xin Yi", "Shu Fen", "Aishah"]),
    "XXA": (["Mohammed", "Abdul", "Nur", "Anwar", "Hussain", "Rafiq"],
            ["Rashida", "Fatema", "Noor", "Hasina", "Jamalida", "Sanjida"]),
    "OTHER": (["John", "Arun", "Li", "Minh", "Somchai", "Jose", "Rahim", "Tom"],
              ["Mary", "Anita", "Mei", "Lan", "Siriporn", "Maria", "Salma", "Emma"]),
}
FAMILY_NAMES: dict[str, list[str]] = {
    "IDN": ["", "Saputra", "Wijaya", "Hidayat", "Setiawan", "Pratama", "Nasution", "Siregar", "Lubis", "Kurniawan"],
    "MYS": ["bin Abdullah", "binti Ahmad", "bin Ismail", "binti Hassan", "Tan", "Lim", "Wong", "Raj"],
    "SGP": ["Tan", "Lim", "Lee", "Ng", "Ong", "Wong", "Goh", "Chua", "Pillai", "Rahman"],
    "XXA": ["", "Begum", "Khatun", "Ullah", "Islam"],
    "OTHER": ["Smith", "Kumar", "Wang", "Nguyen", "Srisuk", "Santos", "Hossain", "Brown"],
}
