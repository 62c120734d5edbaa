"""The paper's qualitative claims, checked against a results dict (mean over seeds and folds)."""
from __future__ import annotations


def _get(summary: dict, key: str):
    v = summary.get(key)
    return None if v is None else v["mean"]


def _claim(name: str, ours: dict, held, rule: str) -> dict:
    return {"claim": name, "held": held, "rule": rule, "values": ours}


def check_claims(results: dict) -> list[dict]:
    """Each claim: ``held`` True/False, or None when the settings it needs were not run."""
    s = results["summary"]
    claims = []

    a0 = _get(s, "fusion/0dB/audio_rbm")
    b0 = {k: _get(s, f"fusion/0dB/{k}") for k in ("bimodal_dae", "bimodal_dae+audio_rbm")}
    b0 = {k: v for k, v in b0.items() if v is not None}
    claims.append(_claim(
        "Bimodal features beat audio alone under 0 dB white noise",
        {"audio_rbm": a0, **b0},
        None if a0 is None or not b0 else max(b0.values()) > a0,
        "mean accuracy at 0 dB of the best of bimodal_dae, bimodal_dae+audio_rbm > audio_rbm"))

    aug, noaug = _get(s, "cross_modality/video/bimodal_dae"), _get(s, "cross_modality/video/bimodal_dae_no_augmentation")
    claims.append(_claim(
        "Pretraining with augmentation beats no augmentation for video-only input",
        {"augmented": aug, "no_augmentation": noaug},
        None if aug is None or noaug is None else aug > noaug,
        "mean video-only accuracy of the bimodal autoencoder fine-tuned with zeroed-modality examples > without"))

    chance = _get(s, "shared_representation/chance")
    av, va = _get(s, "shared_representation/audio->video/bimodal_dae"), _get(s, "shared_representation/video->audio/bimodal_dae")
    claims.append(_claim(
        "Shared-representation transfer is far above chance in both directions",
        {"audio->video": av, "video->audio": va, "chance": chance},
        None if None in (av, va, chance) else (av >= 2 * chance and va >= 2 * chance),
        "mean accuracy of the bimodal autoencoder's shared codes >= 2x chance in both directions"))

    da_dub = _get(s, "mcgurk/predictions/ga/ba/da")
    da_ba = _get(s, "mcgurk/predictions/ba/ba/da")
    claims.append(_claim(
        "Visual /ga/ with audio /ba/ shifts predictions toward /da/",
        {"P(da | visual ga, audio ba)": da_dub, "P(da | visual ba, audio ba)": da_ba},
        None if da_dub is None or da_ba is None else da_dub > da_ba,
        "share of /da/ predictions for dubbed ga/ba > for congruent ba/ba"))
    return claims
