//! Accounts: sign-up (with a Default project), password checks, lookups.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keyward_core::AuditAction;
use keyward_core::{time::now_unix, UserId};
use keyward_core::{Project, User, UserRole};
use serde_json::json;

use crate::audit::{entry, Target};
use crate::caller::Caller;
use crate::error::{Result, ServiceError};
use crate::{validate, Services, SignupPolicy};

/// What sign-up needs. The password is dropped once hashed.
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// `None`: operator if this is the first account, else user.
    pub role: Option<UserRole>,
}

impl Services {
    /// Whether anyone has an account yet (a fresh installation has none:
    /// the first to sign up becomes its operator).
    pub async fn has_accounts(&self) -> Result<bool> {
        Ok(self.store.count_users().await? > 0)
    }

    /// Whether the sign-up form is open now: always with `signup = open`;
    /// with `closed`, only until the first account (the operator) exists.
    pub async fn signup_open(&self) -> Result<bool> {
        Ok(match self.policy.signup {
            SignupPolicy::Open => true,
            SignupPolicy::Closed => !self.has_accounts().await?,
        })
    }

    /// Sign-up through the form, under the installation's sign-up policy.
    /// An email that has an account gets the same refusal as any other
    /// that cannot sign up, after the same work, so the form does not say
    /// which emails have accounts.
    pub async fn sign_up(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
    ) -> Result<(User, Project)> {
        if !self.signup_open().await? {
            return Err(signup_closed());
        }
        self.create_account(
            caller,
            NewAccount {
                email,
                password,
                role: None,
            },
        )
        .await
        .map_err(|e| match e {
            ServiceError::Conflict(_) => ServiceError::invalid(
                "email",
                "This email cannot be used to sign up. If you have an account, log in; if you were invited, open the link in your invitation.",
            ),
            other => other,
        })
    }

    /// Creates an account and its Default project. The first account of an
    /// installation is its operator.
    pub async fn create_account(
        &self,
        caller: &Caller,
        new: NewAccount<'_>,
    ) -> Result<(User, Project)> {
        let email = validate::email(new.email)?;
        validate::password(new.password)?;
        if self.store.user_by_email(&email).await?.is_some() {
            // The same work as a new account, so timing does not tell
            // which emails have one.
            let _ = off_thread(new.password, hash_password).await;
            return Err(ServiceError::Conflict(format!(
                "An account with the email {email} already exists; log in instead."
            )));
        }
        let role = match new.role {
            Some(r) => r,
            None if self.store.count_users().await? == 0 => UserRole::Operator,
            None => UserRole::User,
        };
        let now = now_unix();
        let user = User {
            id: UserId::generate(),
            name: email.split('@').next().unwrap_or_default().to_owned(),
            email,
            password_hash: off_thread(new.password, hash_password).await?,
            role,
            created_at: now,
        };
        let audit = entry(
            caller,
            AuditAction::UserCreated,
            Target {
                id: user.id.as_str(),
                project: None,
                owner: Some(&user.id),
            },
            json!({ "email": user.email, "role": role.as_str() }),
        );
        self.store
            .insert_user(&user, &audit)
            .await
            .map_err(|e| match e {
                keyward_store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "An account with the email {} already exists; log in instead.",
                    user.email
                )),
                other => other.into(),
            })?;
        let project = self
            .insert_project_owned_by(caller, &user.id, "Default project".into())
            .await?;
        Ok((user, project))
    }

    /// The account with `email` if `password` is right. The same error for a
    /// wrong password and an unknown email.
    pub async fn verify_password(&self, email: &str, password: &str) -> Result<User> {
        let wrong = || ServiceError::invalid("password", "Incorrect email or password.");
        let email = email.trim().to_lowercase();
        let Some(user) = self.store.user_by_email(&email).await? else {
            // Spend the same time as a real check, so timing does not tell
            // which emails have accounts.
            let _ = off_thread(password, hash_password).await;
            return Err(wrong());
        };
        let stored = user.password_hash.clone();
        let matches = off_thread(password, move |password| {
            let parsed = PasswordHash::new(&stored).map_err(|_| {
                ServiceError::Conflict(
                    "This account's password hash is unreadable; reset it.".into(),
                )
            })?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await?;
        if !matches {
            return Err(wrong());
        }
        Ok(user)
    }

    pub async fn user(&self, id: &UserId) -> Result<User> {
        self.store
            .user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", id))
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?)
    }
}

/// The refusal when sign-up is closed.
pub(crate) fn signup_closed() -> ServiceError {
    ServiceError::Refused(
        "Sign-up is closed on this Keyward. Ask a project owner to invite you (the invitation link lets you sign up), or the operator to create your account."
            .into(),
    )
}

/// argon2id with the crate's default (OWASP-recommended) parameters.
/// Runs argon2 (tens of milliseconds by design) on the blocking pool, so a
/// burst of log-ins never stalls the async workers serving the gateway.
async fn off_thread<T: Send + 'static>(
    password: &str,
    work: impl FnOnce(&str) -> Result<T> + Send + 'static,
) -> Result<T> {
    let password = password.to_owned();
    match tokio::task::spawn_blocking(move || work(&password)).await {
        Ok(result) => result,
        // A panic in argon2 stays a panic (the server answers 500).
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            ServiceError::invalid("password", format!("The password cannot be hashed: {e}."))
        })
}
