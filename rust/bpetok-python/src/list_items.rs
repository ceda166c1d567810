//! A list's items read in place, where this interpreter's layout of a list is known.
//!
//! The module is built against the limited API, which reads a list item by item through
//! `PyList_GetItem`: a call per item, a third of the cost of decoding a list of ids. CPython's
//! default build has laid a list out the same way from 3.8 to 3.14 (the object header, the
//! length, the array of item pointers), so on those versions, after checking that layout on a
//! list of its own, the array is read directly, as the `PyList_GET_ITEM` macro of the full API
//! does. On any other interpreter the items are read through `PyList_GetItem`.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// `PyListObject` of CPython's default build, 3.8 to 3.14.
#[repr(C)]
struct ListLayout {
    refcnt: isize,
    tp: *mut ffi::PyTypeObject,
    size: ffi::Py_ssize_t,
    items: *const *mut ffi::PyObject,
}

static IN_PLACE: OnceLock<bool> = OnceLock::new();

/// The array of `list`'s item pointers (borrowed references, `list.len()` of them), or `None`
/// where they must be read through `PyList_GetItem`. Valid while the list is not changed.
#[allow(unsafe_code)]
pub fn item_array(list: &Bound<'_, PyList>) -> Option<*const *mut ffi::PyObject> {
    let py = list.py();
    if !*IN_PLACE.get_or_init(|| layout_is_known(py).unwrap_or(false)) {
        return None;
    }
    // SAFETY: `layout_is_known` found this interpreter to be one whose lists have this layout,
    // and `list` is a live list (its type was checked by the caller's `Bound<PyList>`).
    Some(unsafe { (*list.as_ptr().cast::<ListLayout>()).items })
}

/// The minor version of this interpreter if it is CPython 3 without `Py_TRACE_REFS` (whose
/// objects' layouts the full API's macros describe; `Py_TRACE_REFS` adds two pointers to every
/// object's header).
pub fn cpython_minor(py: Python<'_>) -> PyResult<Option<u32>> {
    let sys = py.import("sys")?;
    let name: String = sys.getattr("implementation")?.getattr("name")?.extract()?;
    let version = sys.getattr("version_info")?;
    let (major, minor): (u32, u32) = (
        version.get_item(0)?.extract()?,
        version.get_item(1)?.extract()?,
    );
    let known = name == "cpython" && major == 3 && !sys.hasattr("getobjects")?;
    Ok(known.then_some(minor))
}

/// Whether this interpreter is CPython 3.8 to 3.14 without `Py_TRACE_REFS` (which adds two
/// pointers to every object's header), and a list of seven items made here reads the same in
/// place as through `PyList_GetItem`.
#[allow(unsafe_code)]
fn layout_is_known(py: Python<'_>) -> PyResult<bool> {
    if !cpython_minor(py)?.is_some_and(|minor| (8..=14).contains(&minor)) {
        return Ok(false);
    }
    let items: Vec<Bound<'_, PyString>> = (0..7)
        .map(|i| PyString::new(py, &format!("bpetok list item {i}")))
        .collect();
    let list = PyList::new(py, &items)?;
    // SAFETY: a list object of any CPython build is larger than the four fields read here, and
    // on the versions above without `Py_TRACE_REFS` they are these fields. The array is read only
    // once the length read there is the list's.
    unsafe {
        let layout = &*list.as_ptr().cast::<ListLayout>();
        if layout.size != 7 || layout.items.is_null() {
            return Ok(false);
        }
        for (i, item) in items.iter().enumerate() {
            if *layout.items.add(i) != item.as_ptr() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
