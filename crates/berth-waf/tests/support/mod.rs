pub mod benign;
pub mod corpus;
