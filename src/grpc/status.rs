//! The one place where daemon errors become gRPC statuses.
use tonic::Status;

use crate::supervisor::ApiError;

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::NotFound(_) => Status::not_found(msg),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ApiError::InvalidArgument { .. } => Status::invalid_argument(msg),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(msg),
            ApiError::Unavailable(_) => Status::unavailable(msg),
            ApiError::Internal(_) => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_error_has_its_code_and_names_the_field() {
        assert_eq!(
            Status::from(ApiError::NotFound("run_x".into())).code(),
            Code::NotFound
        );
        let s = Status::from(ApiError::invalid("argv", "must name a program to run"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("argv: "), "{}", s.message());
        assert_eq!(
            Status::from(ApiError::FailedPrecondition("ended".into())).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            Status::from(ApiError::ResourceExhausted("full".into())).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            Status::from(ApiError::Unavailable("bye".into())).code(),
            Code::Unavailable
        );
    }
}
