// @generated automatically by Diesel CLI.

diesel::table! {
    comments (id) {
        id -> Int4,
        body -> Text,
        post_id -> Int4,
        author_id -> Int4,
        created_at -> Timestamp,
        parent_id -> Nullable<Int4>,
    }
}

diesel::table! {
    post_tags (post_id, tag_id) {
        post_id -> Int4,
        tag_id -> Int4,
    }
}

diesel::table! {
    posts (id) {
        id -> Int4,
        #[max_length = 200]
        title -> Varchar,
        content -> Text,
        author_id -> Int4,
        created_at -> Timestamp,
    }
}

diesel::table! {
    tags (id) {
        id -> Int4,
        #[max_length = 50]
        name -> Varchar,
    }
}

diesel::table! {
    users (id) {
        id -> Int4,
        #[max_length = 120]
        email -> Varchar,
        #[max_length = 100]
        full_name -> Varchar,
        #[max_length = 50]
        first_name -> Nullable<Varchar>,
        #[max_length = 50]
        last_name -> Nullable<Varchar>,
        is_active -> Bool,
        created_at -> Timestamp,
    }
}

diesel::joinable!(comments -> posts (post_id));
diesel::joinable!(comments -> users (author_id));
diesel::joinable!(post_tags -> posts (post_id));
diesel::joinable!(post_tags -> tags (tag_id));
diesel::joinable!(posts -> users (author_id));

diesel::allow_tables_to_appear_in_same_query!(comments, post_tags, posts, tags, users,);
