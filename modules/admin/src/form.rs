//! Building the XEP-0004 forms of XEP-0133 (FORM_TYPE `http://jabber.org/protocol/admin`).

use starling_api::xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

/// The FORM_TYPE of every XEP-0133 form.
pub const FORM_TYPE: &str = "http://jabber.org/protocol/admin";

/// A form to fill in, with a title.
pub fn form(title: &str, fields: Vec<Field>) -> DataForm {
    let mut form = DataForm::new(DataFormType::Form, FORM_TYPE, fields);
    form.title = Some(title.to_owned());
    form
}

/// A result form.
pub fn result(fields: Vec<Field>) -> DataForm {
    DataForm::new(DataFormType::Result_, FORM_TYPE, fields)
}

/// A field with a label and values.
pub fn field(var: &str, type_: FieldType, label: &str, values: Vec<String>) -> Field {
    let mut field = Field::new(var, type_);
    field.label = Some(label.to_owned());
    field.values = values;
    field
}

/// A required field.
pub fn required(mut field: Field) -> Field {
    field.required = true;
    field
}

/// A `list-single` field with the given options (value = label).
pub fn choice(var: &str, label: &str, options: &[&str], default: &str) -> Field {
    let mut field = field(var, FieldType::ListSingle, label, vec![default.to_owned()]);
    field.options = options.iter().map(|o| Option_ { label: Some((*o).to_owned()), value: (*o).to_owned() }).collect();
    field
}
