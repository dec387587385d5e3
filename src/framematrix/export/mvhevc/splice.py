"""Splice two single-layer H.265 streams (left eye, right eye) into one two-layer MV-HEVC stream.

The left eye stays the base layer (``nuh_layer_id`` 0, view 0). The right eye becomes layer 1
(view 1): its SPS and PPS are re-emitted with ``nuh_layer_id`` 1 and ids 1, and its slice
segments are re-emitted with ``nuh_layer_id`` 1, ``slice_pic_parameter_set_id`` 1, the POC LSB
that a layer-1 IDR slice carries (F.7.3.6.1) and ``inter_layer_pred_enabled_flag`` 0, so layer 1
decodes exactly as the right-eye stream did on its own. A new VPS with ``vps_extension()``
(F.7.3.2.1.1) declares the two layers: multiview scalability, view ids 0 and 1, layer 1 directly
depending on layer 0 (as Apple's encoder signals it), one representation format, the Multiview
Main profile for the output layer set of both layers. The "three-dimensional reference displays
information" SEI message (payload type 176, G.14.2.3 in the 2016+ editions of H.265) names the
left and right views.

Restrictions (each raises :class:`BitstreamError`): one sub-layer, no scaling lists in a
layer-1 SPS, no extra slice header bits, no weighted prediction, no reference list modification,
no PPS range/SCC extensions. The libx265 settings of :mod:`framematrix.export.mvhevc.writer`
produce none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from framematrix.export.mvhevc.bitstream import BitReader, BitstreamError, BitWriter
from framematrix.export.mvhevc.nal import (
    PPS,
    PREFIX_SEI,
    SPS,
    VPS,
    NalUnit,
    is_idr,
    is_irap,
    is_vcl,
)
from framematrix.export.mvhevc.params import PPSInfo, SPSInfo, parse_st_ref_pic_set, parse_vps

__all__ = [
    "SliceHeader",
    "build_3d_reference_displays_sei",
    "build_layer1_pps",
    "build_layer1_sps",
    "build_vps",
    "layer1_parameter_sets",
    "parse_slice_header",
    "rewrite_slice_for_layer1",
    "two_layer_vps",
]

SLICE_B, SLICE_P, SLICE_I = 0, 1, 2
MULTIVIEW_MAIN = 6  # general_profile_idc of the Multiview Main profile (G.11.1.1)
SEI_3D_REFERENCE_DISPLAYS = 176


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length() if n > 1 else 0


def _rbsp_payload_bits(rbsp: bytes) -> int:
    """Bits before the rbsp_stop_one_bit (the last 1 bit of the RBSP)."""
    end = len(rbsp) * 8 - 1
    while end >= 0 and not (rbsp[end >> 3] >> (7 - (end & 7))) & 1:
        end -= 1
    if end < 0:
        raise BitstreamError("RBSP without rbsp_stop_one_bit")
    return end


def _write_ptl(w: BitWriter, ptl: dict, profile_present: bool) -> None:
    """profile_tier_level(profile_present, 0): general fields only (one sub-layer)."""
    if profile_present:
        w.u(2, ptl["profile_space"])
        w.u(1, ptl["tier"])
        w.u(5, ptl["profile_idc"])
        w.u(32, ptl["compat"])
        w.u(1, ptl["progressive"])
        w.u(1, ptl["interlaced"])
        w.u(1, ptl["non_packed"])
        w.u(1, ptl["frame_only"])
        w.u(44, ptl["constraint_44"])
    w.u(8, ptl["level_idc"])


# ----------------------------------------------------------------------------- parameter sets


def build_vps(base_vps_rbsp: bytes, sps: SPSInfo, *, view_ids: tuple[int, int] = (0, 1)) -> bytes:
    """The RBSP of a two-layer VPS (ids: VPS of the base stream, layers 0 and 1).

    base_vps_rbsp: the single-layer VPS of the left-eye stream (its profile, level and DPB sizes
        are kept); sps: the left-eye SPS (the representation format of both layers).
    """
    base = parse_vps(base_vps_rbsp)
    if base["max_layers_minus1"] != 0:
        raise BitstreamError("the base stream's VPS already declares several layers")
    if base["max_sub_layers_minus1"] != 0 or sps.max_sub_layers_minus1 != 0:
        raise BitstreamError("streams with temporal sub-layers are not supported")
    if min(view_ids) < 0 or max(view_ids) >= 2**15 or view_ids[0] == view_ids[1]:
        raise BitstreamError(f"view ids {view_ids} must be distinct and in 0..32767")
    ptl = base["ptl"]
    w = BitWriter()
    w.u(4, base["vps_id"])
    w.u(1, 1)  # vps_base_layer_internal_flag
    w.u(1, 1)  # vps_base_layer_available_flag
    w.u(6, 1)  # vps_max_layers_minus1
    w.u(3, 0)  # vps_max_sub_layers_minus1
    w.u(1, base["temporal_id_nesting"])
    w.u(16, 0xFFFF)
    _write_ptl(w, ptl, True)
    w.u(1, 1)  # vps_sub_layer_ordering_info_present_flag
    dec_minus1, reorder, latency_plus1 = sps.dpb
    w.ue(dec_minus1)
    w.ue(reorder)
    w.ue(latency_plus1)
    w.u(6, 1)  # vps_max_layer_id
    w.ue(1)  # vps_num_layer_sets_minus1: layer sets {0} and {0, 1}
    w.u(1, 1)  # layer_id_included_flag[1][0]
    w.u(1, 1)  # layer_id_included_flag[1][1]
    w.u(1, 0)  # vps_timing_info_present_flag
    w.u(1, 1)  # vps_extension_flag
    while not w.byte_aligned():
        w.u(1, 1)  # vps_extension_alignment_bit_equal_to_one
    # vps_extension()
    _write_ptl(w, ptl, False)  # PTL 1, the base layer: level only (profile inferred)
    w.u(1, 0)  # splitting_flag
    for i in range(16):
        w.u(1, 1 if i == 1 else 0)  # scalability_mask_flag: 1 = multiview
    w.u(3, 2)  # dimension_id_len_minus1[0] (3 bits, as Apple's files)
    w.u(1, 1)  # vps_nuh_layer_id_present_flag
    w.u(6, 1)  # layer_id_in_nuh[1]
    w.u(3, 1)  # dimension_id[1][0]: ViewOrderIdx 1
    id_len = max(1, max(view_ids).bit_length())
    w.u(4, id_len)  # view_id_len
    for view_id in view_ids:
        w.u(id_len, view_id)  # view_id_val
    w.u(1, 1)  # direct_dependency_flag[1][0]
    w.u(1, 0)  # vps_sub_layers_max_minus1_present_flag
    w.u(1, 0)  # max_tid_ref_present_flag
    w.u(1, 0)  # default_ref_layers_active_flag: slices say inter_layer_pred_enabled_flag
    w.ue(2)  # vps_num_profile_tier_level_minus1: PTLs 0 (VPS), 1 (base), 2 (Multiview Main)
    w.u(1, 1)  # vps_profile_present_flag[2]
    _write_ptl(
        w,
        {
            "profile_space": 0,
            "tier": ptl["tier"],
            "profile_idc": MULTIVIEW_MAIN,
            "compat": 1 << (31 - MULTIVIEW_MAIN),
            "progressive": ptl["progressive"],
            "interlaced": ptl["interlaced"],
            "non_packed": ptl["non_packed"],
            "frame_only": ptl["frame_only"],
            # max_12bit, max_10bit, max_8bit, max_422chroma, max_420chroma (as Apple's files)
            "constraint_44": 0xF8 << 36,
            "level_idc": ptl["level_idc"],
        },
        True,
    )
    w.ue(0)  # num_add_olss
    w.u(2, 0)  # default_output_layer_idc: every layer of an output layer set is output
    w.u(2, 1)  # profile_tier_level_idx[1][0]: base layer -> PTL 1
    w.u(2, 2)  # profile_tier_level_idx[1][1]: layer 1 -> Multiview Main
    w.ue(0)  # vps_num_rep_formats_minus1
    # rep_format()
    w.u(16, sps.width)
    w.u(16, sps.height)
    w.u(1, 1)  # chroma_and_bit_depth_vps_present_flag
    w.u(2, sps.chroma_format_idc)
    if sps.chroma_format_idc == 3:
        w.u(1, int(sps.separate_colour_plane))
    w.u(4, sps.bit_depth_luma_minus8)
    w.u(4, sps.bit_depth_chroma_minus8)
    has_window = any(sps.conf_win)
    w.u(1, int(has_window))  # conformance_window_vps_flag
    if has_window:
        for offset in sps.conf_win:
            w.ue(offset)
    w.u(1, 1)  # max_one_active_ref_layer_flag
    w.u(1, 1)  # vps_poc_lsb_aligned_flag: both pictures of an access unit share the POC LSB
    # dpb_size() of output layer set 1
    w.u(1, 0)  # sub_layer_flag_info_present_flag[1]
    w.ue(dec_minus1)  # max_vps_dec_pic_buffering_minus1[1][0][0]
    w.ue(dec_minus1)  # max_vps_dec_pic_buffering_minus1[1][1][0]
    w.ue(reorder)  # max_vps_num_reorder_pics[1][0]
    w.ue(latency_plus1)  # max_vps_latency_increase_plus1[1][0]
    w.ue(0)  # direct_dep_type_len_minus2
    w.u(1, 1)  # direct_dependency_all_layers_flag
    w.u(2, 2)  # direct_dependency_all_layers_type: sample and motion (as Apple's files)
    w.ue(0)  # vps_non_vui_extension_length
    w.u(1, 0)  # vps_vui_present_flag
    w.u(1, 0)  # vps_extension2_flag
    w.trailing_bits()
    return w.to_bytes()


def build_layer1_sps(sps_rbsp: bytes, sps: SPSInfo, sps_id: int = 1) -> bytes:
    """The right-eye SPS as a layer-1 SPS with MultiLayerExtSpsFlag (F.7.3.2.2.1), as Apple's.

    Its picture format and DPB sizes come from the VPS (rep_format(), dpb_size()); everything
    from log2_min_luma_coding_block_size_minus3 on is the right-eye SPS bit for bit.
    """
    if sps.scaling_list_enabled:
        raise BitstreamError("a layer-1 SPS with scaling lists is not supported")
    w = BitWriter()
    w.u(4, sps.vps_id)
    w.u(3, 7)  # sps_ext_or_max_sub_layers_minus1 = 7: MultiLayerExtSpsFlag
    w.ue(sps_id)
    w.u(1, 0)  # update_rep_format_flag: use the VPS rep_format()
    w.ue(sps.log2_max_poc_lsb - 4)
    end = _rbsp_payload_bits(sps_rbsp)
    w.copy(BitReader(sps_rbsp, sps.pos_after_ordering), end - sps.pos_after_ordering)
    w.trailing_bits()
    return w.to_bytes()


def build_layer1_pps(pps_rbsp: bytes, pps: PPSInfo, pps_id: int = 1, sps_id: int = 1) -> bytes:
    """The right-eye PPS with new ids (pps_pic_parameter_set_id, pps_seq_parameter_set_id)."""
    w = BitWriter()
    w.ue(pps_id)
    w.ue(sps_id)
    end = _rbsp_payload_bits(pps_rbsp)
    w.copy(BitReader(pps_rbsp, pps.pos_after_sps_id), end - pps.pos_after_sps_id)
    w.trailing_bits()
    return w.to_bytes()


def build_3d_reference_displays_sei(
    left_view_id: int = 0,
    right_view_id: int = 1,
    prec_ref_display_width: int = 31,
) -> NalUnit:
    """A prefix SEI NAL unit (layer 0) with one three_dimensional_reference_displays_info message.

    As in Apple's files: one reference display, no viewing distance, width not given
    (exponent 0, mantissa 0), no additional shift.
    """
    w = BitWriter()
    w.ue(prec_ref_display_width)
    w.u(1, 0)  # ref_viewing_distance_flag
    w.ue(0)  # num_ref_displays_minus1
    w.ue(left_view_id)
    w.ue(right_view_id)
    w.u(6, 0)  # exponent_ref_display_width
    w.u(max(0, prec_ref_display_width - 30), 0)  # mantissa_ref_display_width (exponent 0)
    w.u(1, 0)  # additional_shift_present_flag
    w.u(1, 0)  # three_dimensional_reference_displays_extension_flag
    if not w.byte_aligned():
        w.trailing_bits()  # payload_bit_equal_to_one, payload_bit_equal_to_zero...
    payload = w.to_bytes()
    if len(payload) >= 255:
        raise BitstreamError("SEI payload too long")
    rbsp = bytes([SEI_3D_REFERENCE_DISPLAYS, len(payload)]) + payload + b"\x80"
    return NalUnit.from_rbsp(PREFIX_SEI, 0, rbsp)


# ----------------------------------------------------------------------------- slice headers


@dataclass(frozen=True)
class SliceHeader:
    """What the splice needs to know of a slice segment (7.3.6.1)."""

    nal_type: int
    first_slice_in_pic: bool
    dependent: bool
    slice_type: int | None  # None for a dependent slice segment
    poc_lsb: int  # 0 for IDR pictures


class _SliceParser:
    """Walks a base-layer slice segment header; ``marks`` records bit positions of interest."""

    def __init__(self, nal: NalUnit, sps: SPSInfo, pps: PPSInfo) -> None:
        if not is_vcl(nal.nal_type):
            raise BitstreamError(f"NAL unit type {nal.nal_type} is not a slice segment")
        if pps.num_extra_slice_header_bits:
            raise BitstreamError("slices with extra slice header bits are not supported")
        if pps.pps_ext_flags:
            raise BitstreamError("PPS range/multilayer/SCC extensions are not supported")
        self.rbsp = nal.rbsp()
        self.nal, self.sps, self.pps = nal, sps, pps
        r = self.r = BitReader(self.rbsp)
        self.first = bool(r.u(1))
        if is_irap(nal.nal_type):
            r.u(1)  # no_output_of_prior_pics_flag
        self.pos_pps_id = r.pos
        pps_id = r.ue()
        if pps_id != pps.pps_id:
            raise BitstreamError(f"slice refers to PPS {pps_id}, expected {pps.pps_id}")
        self.pos_after_pps_id = r.pos
        self.dependent = False
        if not self.first:
            if pps.dependent_slice_segments:
                self.dependent = bool(r.u(1))
            r.u(_ceil_log2(sps.pic_size_in_ctbs))  # slice_segment_address
        self.slice_type: int | None = None
        self.poc_lsb = 0
        self.pos_poc = self.pos_after_poc = self.pos_rest = r.pos
        if not self.dependent:
            self._independent()
        self._tail()

    def _independent(self) -> None:
        r, sps, pps, nal = self.r, self.sps, self.pps, self.nal
        self.slice_type = r.ue()
        if self.slice_type not in (SLICE_B, SLICE_P, SLICE_I):
            raise BitstreamError(f"slice_type {self.slice_type} is invalid")
        if pps.output_flag_present:
            r.u(1)
        if sps.separate_colour_plane:
            r.u(2)
        self.pos_poc = r.pos
        tmvp = False
        if not is_idr(nal.nal_type):
            self.poc_lsb = r.u(sps.log2_max_poc_lsb)
            self.pos_after_poc = r.pos
            if not r.u(1):  # short_term_ref_pic_set_sps_flag
                n = sps.num_short_term_ref_pic_sets
                parse_st_ref_pic_set(r, n, n, sps.st_rps_num_delta)
            elif sps.num_short_term_ref_pic_sets > 1:
                r.u(_ceil_log2(sps.num_short_term_ref_pic_sets))
            if sps.long_term_ref_pics_present:
                num_lt_sps = r.ue() if sps.num_long_term_ref_pics_sps > 0 else 0
                num_lt_pics = r.ue()
                for i in range(num_lt_sps + num_lt_pics):
                    if i < num_lt_sps:
                        r.u(_ceil_log2(sps.num_long_term_ref_pics_sps))
                    else:
                        r.u(sps.log2_max_poc_lsb)
                        r.u(1)
                    if r.u(1):  # delta_poc_msb_present_flag
                        r.ue()
            if sps.temporal_mvp:
                tmvp = bool(r.u(1))
        else:
            self.pos_after_poc = r.pos
        # Here a layer-1 slice carries inter_layer_pred_enabled_flag.
        self.pos_rest = r.pos
        sao_luma = sao_chroma = False
        if sps.sao:
            sao_luma = bool(r.u(1))
            chroma_array_type = 0 if sps.separate_colour_plane else sps.chroma_format_idc
            if chroma_array_type:
                sao_chroma = bool(r.u(1))
        if self.slice_type in (SLICE_P, SLICE_B):
            l0, l1 = pps.num_ref_idx_l0_default_minus1, pps.num_ref_idx_l1_default_minus1
            if r.u(1):  # num_ref_idx_active_override_flag
                l0 = r.ue()
                if self.slice_type == SLICE_B:
                    l1 = r.ue()
            if pps.lists_modification_present:
                raise BitstreamError("reference picture list modification is not supported")
            if self.slice_type == SLICE_B:
                r.u(1)  # mvd_l1_zero_flag
            if pps.cabac_init_present:
                r.u(1)
            if tmvp:
                from_l0 = True
                if self.slice_type == SLICE_B:
                    from_l0 = bool(r.u(1))
                if (from_l0 and l0 > 0) or (not from_l0 and l1 > 0):
                    r.ue()  # collocated_ref_idx
            if (pps.weighted_pred and self.slice_type == SLICE_P) or (
                pps.weighted_bipred and self.slice_type == SLICE_B
            ):
                raise BitstreamError("weighted prediction is not supported")
            r.ue()  # five_minus_max_num_merge_cand
        r.se()  # slice_qp_delta
        if pps.slice_chroma_qp_offsets_present:
            r.se()
            r.se()
        disabled = pps.pps_deblocking_disabled
        if pps.deblocking_override_enabled and r.u(1):  # deblocking_filter_override_flag
            disabled = bool(r.u(1))
            if not disabled:
                r.se()
                r.se()
        if pps.loop_filter_across_slices and (sao_luma or sao_chroma or not disabled):
            r.u(1)  # slice_loop_filter_across_slices_enabled_flag

    def _tail(self) -> None:
        r, pps = self.r, self.pps
        if pps.tiles or pps.entropy_coding_sync:
            count = r.ue()
            if count:
                bits = r.ue() + 1
                for _ in range(count):
                    r.u(bits)  # entry_point_offset_minus1
        if pps.slice_header_extension_present:
            r.u(8 * r.ue())
        self.pos_header_end = r.pos
        if r.u(1) != 1:
            raise BitstreamError("slice header does not end with alignment_bit_equal_to_one")
        while not r.byte_aligned():
            if r.u(1):
                raise BitstreamError("slice header alignment bits are not zero")
        self.data_start = r.pos // 8

    def header(self) -> SliceHeader:
        return SliceHeader(
            self.nal.nal_type, self.first, self.dependent, self.slice_type, self.poc_lsb
        )


def parse_slice_header(nal: NalUnit, sps: SPSInfo, pps: PPSInfo) -> SliceHeader:
    """Parse the slice segment header of a base-layer slice NAL unit."""
    return _SliceParser(nal, sps, pps).header()


def rewrite_slice_for_layer1(
    nal: NalUnit, sps: SPSInfo, pps: PPSInfo, pps_id: int = 1
) -> tuple[NalUnit, SliceHeader]:
    """A right-eye slice segment re-emitted as a layer-1 slice segment (see the module doc)."""
    p = _SliceParser(nal, sps, pps)
    rbsp = p.rbsp
    w = BitWriter()
    w.copy(BitReader(rbsp, 0), p.pos_pps_id)
    w.ue(pps_id)
    if p.dependent:
        w.copy(BitReader(rbsp, p.pos_after_pps_id), p.pos_header_end - p.pos_after_pps_id)
    else:
        w.copy(BitReader(rbsp, p.pos_after_pps_id), p.pos_poc - p.pos_after_pps_id)
        if is_idr(nal.nal_type):
            w.u(sps.log2_max_poc_lsb, 0)  # slice_pic_order_cnt_lsb of a layer-1 IDR picture
        w.copy(BitReader(rbsp, p.pos_poc), p.pos_rest - p.pos_poc)
        w.u(1, 0)  # inter_layer_pred_enabled_flag: each eye decodes on its own
        w.copy(BitReader(rbsp, p.pos_rest), p.pos_header_end - p.pos_rest)
    w.trailing_bits()  # byte_alignment()
    out = w.to_bytes() + rbsp[p.data_start :]
    return (
        NalUnit.from_rbsp(nal.nal_type, 1, out, nal.temporal_id_plus1),
        p.header(),
    )


def layer1_parameter_sets(
    sps_nal: NalUnit, pps_nal: NalUnit, sps: SPSInfo, pps: PPSInfo
) -> tuple[NalUnit, NalUnit]:
    """The layer-1 SPS and PPS NAL units made from the right eye's."""
    return (
        NalUnit.from_rbsp(SPS, 1, build_layer1_sps(sps_nal.rbsp(), sps)),
        NalUnit.from_rbsp(PPS, 1, build_layer1_pps(pps_nal.rbsp(), pps)),
    )


def two_layer_vps(vps_nal: NalUnit, sps: SPSInfo) -> NalUnit:
    return NalUnit.from_rbsp(VPS, 0, build_vps(vps_nal.rbsp(), sps))
